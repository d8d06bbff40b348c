//! The stages of a listener's shutdown as its connections see them: serving, stopping (idle
//! connections close, busy ones finish) and stopped (every connection closes).
//!
//! Every connection checks the stage each time its task wakes, which is several times per
//! request. A `CancellationToken` per stage would cost two locks per check (its own mutex and
//! its `Notify`'s), on locks every connection of the listener shares; here a check is one
//! atomic load. A connection registers its task's waker with the [`Notify`] once per stage
//! (again only if the task's waker changes), and is woken through it when the stage changes.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Waker};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// A shutdown stage; later stages compare greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Stage {
    Serving = 0,
    /// Idle connections close at once; requests in flight get the grace period.
    Stopping = 1,
    /// The grace period is over: every connection closes.
    Stopped = 2,
}

impl Stage {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Stage::Serving,
            1 => Stage::Stopping,
            _ => Stage::Stopped,
        }
    }
}

/// A listener's current stage, shared by its connections.
#[derive(Debug, Default)]
pub struct Stages {
    stage: AtomicU8,
    notify: Notify,
}

impl Stages {
    /// Moves to `stage` (never back) and wakes every connection.
    pub fn enter(&self, stage: Stage) {
        self.stage.fetch_max(stage as u8, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    pub fn current(&self) -> Stage {
        Stage::from_u8(self.stage.load(Ordering::Acquire))
    }

    /// A connection's watch on the stages, starting from [`Stage::Serving`].
    pub fn watch(&self) -> StageWatch<'_> {
        StageWatch {
            stages: self,
            notified: Box::pin(self.notify.notified()),
            waker: None,
            seen: Stage::Serving,
        }
    }
}

/// One connection's watch: see the module documentation.
pub struct StageWatch<'a> {
    stages: &'a Stages,
    /// Created before the stage is read, so no `enter` after that read goes unnoticed.
    notified: Pin<Box<Notified<'a>>>,
    /// The waker `notified` was last polled with.
    waker: Option<Waker>,
    seen: Stage,
}

impl StageWatch<'_> {
    /// Ready with each stage entered since the last one it returned, in order of the stages
    /// (a stage skipped over is not returned).
    pub fn poll_change(&mut self, cx: &mut Context<'_>) -> Poll<Stage> {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            // Takes the Notify's lock: once per stage, not once per wake.
            let _ = self.notified.as_mut().poll(cx);
            self.waker = Some(cx.waker().clone());
        }
        let stage = self.stages.current();
        if stage <= self.seen {
            return Poll::Pending;
        }
        self.seen = stage;
        // Armed for the next stage; registered at the next poll, before the stage is read.
        self.notified.set(self.stages.notify.notified());
        self.waker = None;
        Poll::Ready(stage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test]
    async fn each_stage_is_seen_once_and_wakes_a_waiting_connection() {
        let stages = std::sync::Arc::new(Stages::default());
        let waiting = tokio::spawn({
            let stages = stages.clone();
            async move {
                let mut watch = stages.watch();
                let first = poll_fn(|cx| watch.poll_change(cx)).await;
                let second = poll_fn(|cx| watch.poll_change(cx)).await;
                (first, second)
            }
        });
        tokio::task::yield_now().await;
        stages.enter(Stage::Stopping);
        tokio::task::yield_now().await;
        stages.enter(Stage::Stopped);
        let seen = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
        // The test runtime has one thread: the watcher runs at each yield, in order.
        assert!(matches!(seen, Ok(Ok((Stage::Stopping, Stage::Stopped)))));
    }

    #[tokio::test]
    async fn a_watch_made_after_the_stop_sees_it_at_once() {
        let stages = Stages::default();
        stages.enter(Stage::Stopping);
        let mut watch = stages.watch();
        let seen = poll_fn(|cx| Poll::Ready(watch.poll_change(cx))).await;
        assert_eq!(seen, Poll::Ready(Stage::Stopping));
        let again = poll_fn(|cx| Poll::Ready(watch.poll_change(cx))).await;
        assert_eq!(again, Poll::Pending);
    }
}
