//! # Tessera
//!
//! A session service with two paths (DESIGN §1):
//!
//! * **Stateful**: browsers hold an opaque `__Host-` cookie; every high-risk check reads the
//!   session record in Redis, so a revoked session is dead on the very next request.
//! * **Stateless**: short-lived (minutes) ES256/EdDSA access tokens minted only from a live
//!   session and carrying its `sid`, verified locally against the published JWKS.
//!
//! Security model in brief: session credentials are `tsr_s_<id>.<secret>` with 256-bit secrets
//! of which Redis stores only SHA-256; comparisons are constant time; the session id is a public
//! handle that routes itself (region, user hash tag) but grants nothing. Signing keys are shared
//! by every node through Redis, encrypted under a key-encryption key that never leaves the
//! nodes. Token validation is one strict function (`token::validate`).
//!
//! Layering: `http` → `session` (pure domain + ports) → `store` / `token`.
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod authn;
pub mod clock;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod meters;
pub mod revocation;
pub mod scope;
pub mod session;
pub mod signing;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod verify;

pub use app::{connect_guard, Application};
pub use config::Settings;
/// The session guard and its extractors live in `http`; this path is kept for embedders.
pub use http::guard;
