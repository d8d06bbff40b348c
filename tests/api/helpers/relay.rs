//! A TCP relay on a loopback port of its own, for a test that needs an address that stays the
//! same while what answers there changes: a server that is down (connections are accepted and
//! closed at once), then a server that comes up, is restarted elsewhere or goes away again.
//!
//! Without it such a test would have to pick a port, release it and hope to bind it again
//! later, and meanwhile any other test could take it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;

/// See the module documentation. Dropping it closes the port and every relayed connection.
pub struct Relay {
    pub addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    _task: AbortOnDropHandle<()>,
}

impl Relay {
    /// Binds 127.0.0.1:0; connections are closed at once until [`Relay::forward_to`].
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let addr = listener.local_addr().expect("relay address");
        let target: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let current = target.clone();
        let task = tokio::spawn(async move {
            // Owned by the accept loop, so aborting it (drop) ends every connection too.
            let mut connections = JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let Some(to) = *current.lock().expect("relay lock") else {
                    drop(inbound);
                    continue;
                };
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Self {
            addr,
            target,
            _task: AbortOnDropHandle::new(task),
        }
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// New connections are relayed to `to`.
    pub fn forward_to(&self, to: SocketAddr) {
        *self.target.lock().expect("relay lock") = Some(to);
    }

    /// New connections are closed at once, as if nothing answered at this address.
    pub fn refuse(&self) {
        *self.target.lock().expect("relay lock") = None;
    }
}
