//! Waiting for a condition instead of sleeping for a guessed time: poll it until it holds or a
//! deadline passes, then fail naming what was awaited.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is polled. Short: it only bounds how late a met condition is seen.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `check` every [`POLL`] until it returns `Some`, and returns that value. Panics with
/// `what` if `within` passes first (the condition is checked one last time at the deadline).
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        let last_try = Instant::now() >= deadline;
        if let Some(value) = check().await {
            return value;
        }
        if last_try {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// Polls `check` every [`POLL`] until it returns true; panics with `what` after `within`.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(within, what, || {
        let met = check();
        async move { met.await.then_some(()) }
    })
    .await
}

/// The blocking form of [`wait_for`], for code outside a runtime.
pub fn wait_for_blocking<T>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let last_try = Instant::now() >= deadline;
        if let Some(value) = check() {
            return value;
        }
        if last_try {
            panic!("timed out after {within:?} waiting for {what}");
        }
        std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
}
