//! A read barrier for the near cache: a hit is served only after every invalidation Redis sent
//! before the hit began has been applied.
//!
//! Redis writes an invalidation into the tracking connection before it answers the write, but
//! this node applies it only when its tracking task reads the socket; on a busy machine a
//! request can reach a worker first (`scripts/bench-revocation` saw 1 and 25 of 10,000 checks
//! accepted right after a logout on another node). Redis answers commands on a connection in
//! order, after the pushes queued before them, and the client library hands each push to the
//! cache before it completes the next reply: so once a `PING` sent on every tracking connection
//! *after* the hit began has been answered, every invalidation that could concern it has been
//! applied.
//!
//! Rounds are group commits, sent by one task on the tracker's runtime: one round in flight at a
//! time, and the callers that arrive while it is out go together in the next. So the `PING`s
//! are at most one per primary per round trip, however many hits there are.

use redis::aio::MultiplexedConnection;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// Shared by a region's cache (whose hits wait on it) and its tracker (which arms it and runs
/// its rounds).
#[derive(Clone, Default)]
pub struct Fence {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Default)]
struct State {
    /// The tracking connections of one epoch and the time a `PING` may take, while tracking is
    /// on (and the cache trusted) for that epoch.
    armed: Option<(u64, Vec<MultiplexedConnection>, Duration)>,
    /// Callers for the next round.
    waiting: Vec<oneshot::Sender<Option<u64>>>,
}

impl Fence {
    /// Tracking is on, and the cache trusted, for `epoch` with these connections.
    pub fn arm(&self, epoch: u64, conns: Vec<MultiplexedConnection>, timeout: Duration) {
        lock(&self.inner.state).armed = Some((epoch, conns, timeout));
    }

    /// Tracking is down: waiting callers and new ones read Redis.
    pub fn disarm(&self) {
        let waiting = {
            let mut state = lock(&self.inner.state);
            state.armed = None;
            std::mem::take(&mut state.waiting)
        };
        for caller in waiting {
            let _ = caller.send(None);
        }
    }

    /// The epoch of the tracking connections, once a round of `PING`s sent on all of them after
    /// this call has been answered; `None` when that cannot be known (not armed, a `PING` failed
    /// or timed out): the caller reads Redis instead.
    pub async fn pass(&self) -> Option<u64> {
        let (tx, rx) = oneshot::channel();
        let timeout = {
            let mut state = lock(&self.inner.state);
            let (_, _, timeout) = state.armed.as_ref()?;
            let timeout = *timeout;
            state.waiting.push(tx);
            timeout
        };
        self.inner.wake.notify_one();
        // The round in flight, then this one: two `PING` timeouts at most.
        match tokio::time::timeout(timeout * 2 + Duration::from_millis(100), rx).await {
            Ok(Ok(epoch)) => epoch,
            _ => None,
        }
    }

    /// Sends the rounds, forever (the tracker spawns it on its own runtime).
    pub async fn run(self) {
        loop {
            self.inner.wake.notified().await;
            loop {
                let (callers, armed) = {
                    let mut state = lock(&self.inner.state);
                    (std::mem::take(&mut state.waiting), state.armed.clone())
                };
                if callers.is_empty() {
                    break;
                }
                let passed = match armed {
                    Some((epoch, conns, timeout)) if !conns.is_empty() => {
                        let pings = conns.into_iter().map(|mut conn| async move {
                            let cmd = redis::cmd("PING");
                            let ping = cmd.query_async::<String>(&mut conn);
                            matches!(tokio::time::timeout(timeout, ping).await, Ok(Ok(_)))
                        });
                        futures_util::future::join_all(pings)
                            .await
                            .into_iter()
                            .all(|answered| answered)
                            .then_some(epoch)
                    }
                    _ => None,
                };
                for caller in callers {
                    let _ = caller.send(passed);
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
