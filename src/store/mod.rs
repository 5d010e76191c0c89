//! Redis: key layout, Lua scripts, connections and health checks.
//!
//! Request paths use one multiplexed connection per region (a `ConnectionManager`, or a
//! cluster connection; one Redis round trip, no pool checkout); `deadpool-redis` serves
//! out-of-band work (key ring, readiness probes).

pub mod audit;
pub mod auth;
pub mod connection;
pub mod durable;
pub mod fence;
pub mod health;
pub mod keyring;
pub mod keys;
pub mod memory;
pub mod near_cache;
pub mod pending;
pub mod record;
pub mod regional;
pub mod revocations;
pub mod sessions;
pub mod tracking;
pub mod ua_codes;

pub use connection::{PerThread, RedisConnections, RedisSettings};
pub use keys::KeyLayout;
pub use sessions::RedisSessionStore;

use crate::session::StoreError;
use redis::RedisError;

/// Maps a Redis failure to the store error the core understands: anything that means "Redis
/// is not answering properly right now" becomes `Unavailable` (503, fail closed).
pub fn store_error(e: RedisError) -> StoreError {
    let transient_codes = [
        "OOM",
        "LOADING",
        "BUSY",
        "MASTERDOWN",
        "READONLY",
        "CLUSTERDOWN",
        "TRYAGAIN",
        "NOPERM",
    ];
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
        || e.code().is_some_and(|c| transient_codes.contains(&c));
    if transient {
        StoreError::Unavailable(e.into())
    } else {
        StoreError::Other(e.into())
    }
}
