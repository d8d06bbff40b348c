//! The benchmark's yardstick: the smallest hyper server we can write, answering every request
//! with the same JSON bytes that steelcutd serves, with no authentication at all. Every
//! scenario in `benches/run.sh` is reported as a ratio to this server, measured the same way on
//! the same machine, so figures compare across machines.
//!
//! Usage: `baseline-server ADDR FILE`.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8099".into());
    let file = args.next().ok_or("usage: baseline-server ADDR FILE")?;
    let body = Bytes::from(std::fs::read(file)?);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("baseline listening on {}", listener.local_addr()?);
    let builder = Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        let mut resp = Response::new(Full::new(body));
                        resp.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, Infallible>(resp)
                    }
                });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
