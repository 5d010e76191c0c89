//! A read barrier for the near cache: a hit is served only after every invalidation Redis sent
//! before the hit began has been applied.
//!
//! Redis writes an invalidation into the tracking connection in the same event-loop turn as the
//! write's reply, but this node applies it only when its tracking task reads the socket; on a
//! busy machine a request can reach a worker first (`scripts/bench-revocation` saw 1 and 25 of
//! 10,000 checks accepted right after a logout on another node). Redis answers commands on a
//! connection in order, after the pushes queued before them, and the client library hands each
//! push to the cache before it completes the next reply: so once a `PING` sent on every
//! tracking connection *after* the hit began has been answered, every invalidation that could
//! concern it has been applied. Concurrent hits share one round of `PING`s: a round takes the
//! callers that joined it before its `PING`s left, and a later caller starts the next round.

use futures_util::future::{BoxFuture, FutureExt, Shared};
use redis::aio::MultiplexedConnection;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One round of `PING`s; `true` when every tracking connection answered.
type Round = Shared<BoxFuture<'static, bool>>;

/// Shared by a region's cache (which waits on it) and its tracker (which arms it).
#[derive(Clone)]
pub struct Fence {
    inner: Arc<Inner>,
}

struct Inner {
    /// The tracking connections and the time each `PING` may take, while tracking is on.
    conns: Mutex<Option<(Vec<MultiplexedConnection>, Duration)>>,
    /// The round that has not sent its `PING`s yet: the one a new caller joins.
    next: Mutex<Option<Round>>,
}

impl Default for Fence {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                conns: Mutex::new(None),
                next: Mutex::new(None),
            }),
        }
    }
}

impl Fence {
    /// The tracker's connections, once tracking is on with every one of them.
    pub fn arm(&self, conns: Vec<MultiplexedConnection>, timeout: Duration) {
        *lock(&self.inner.conns) = Some((conns, timeout));
    }

    /// Tracking is down: no round passes until it is armed again.
    pub fn disarm(&self) {
        *lock(&self.inner.conns) = None;
    }

    /// Waits until every push sent on the tracking connections before this call has been
    /// applied. `false` when that cannot be known (not armed, a `PING` failed or timed out):
    /// the caller reads Redis instead.
    pub async fn pass(&self) -> bool {
        let round = lock(&self.inner.next)
            .get_or_insert_with(|| self.round())
            .clone();
        round.await
    }

    fn round(&self) -> Round {
        let inner = self.inner.clone();
        async move {
            // From here on this round's `PING`s may be out: a new caller needs the next round.
            lock(&inner.next).take();
            let Some((conns, timeout)) = lock(&inner.conns).clone() else {
                return false;
            };
            let pings = conns.into_iter().map(|mut conn| async move {
                let cmd = redis::cmd("PING");
                let ping = cmd.query_async::<String>(&mut conn);
                matches!(tokio::time::timeout(timeout, ping).await, Ok(Ok(_)))
            });
            futures_util::future::join_all(pings)
                .await
                .into_iter()
                .all(|answered| answered)
        }
        .boxed()
        .shared()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
