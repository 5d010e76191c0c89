//! The session domain: identities, credentials, the pure lifetime policy and the service that
//! ties them to a store and a token issuer through ports.
//!
//! Nothing here knows about actix-web, Redis or jsonwebtoken; time always comes in as `now`.

pub mod credential;
pub mod device;
pub mod grant;
pub mod id;
pub mod model;
pub mod policy;
pub mod ports;
pub mod service;

pub use credential::{CsrfToken, RefreshToken, SecretHash, SessionSecret, SessionToken};
pub use id::{Region, SessionId, UserId};
pub use model::{Acr, NewSession, Session, SessionRecord};
pub use policy::{Liveness, SessionPolicy};
pub use ports::{SessionStore, StoreError, TokenIssuer};
pub use service::{AuthError, SessionService};

/// Milliseconds since the Unix epoch. Every rule takes `now` as one of these.
pub use crate::clock::UnixMillis;

#[cfg(test)]
mod service_tests;
