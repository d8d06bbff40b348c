//! Measures one argon2id verify, which bounds cold token issuance: at most
//! `cores / verify_time` tokens per second. Prints the median of `N` (default 20) verifies in
//! milliseconds.
//!
//! Usage: `argon2-verify [N [M_KIB T P]]`; the cost defaults to steelcutd's (m=19456 KiB, t=2,
//! p=1); `20 65536 3 4` measures the hashes imported from steelcut-oauth.

use std::time::Instant;

use secrecy::SecretString;
use steelcut::auth::password::{hash_secret, verify_secret};
use steelcut::config::Argon2Params;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let cost: Vec<u32> = std::env::args()
        .skip(2)
        .filter_map(|s| s.parse().ok())
        .collect();
    let params = match cost[..] {
        [memory_kib, iterations, parallelism] => Argon2Params {
            memory_kib,
            iterations,
            parallelism,
        },
        _ => Argon2Params::default(),
    };
    let secret = SecretString::from("PRIVATE-bench-secret".to_owned());
    let hash = hash_secret(&secret, params)?;
    let mut times: Vec<f64> = (0..n.max(1))
        .map(|_| {
            let t = Instant::now();
            let ok = verify_secret(&secret, &hash);
            assert!(ok, "verify failed");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!("{:.2}", times[times.len() / 2]);
    Ok(())
}
