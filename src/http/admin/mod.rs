//! The admin listener: backends create sessions for users they authenticated, and inspect them.
//! Every route requires `Authorization: Bearer <admin API key>`.
//!
//! One file per job: `key` (admin-key authentication and scopes), `sessions`, `audit`, `keys`.

pub mod audit;
pub mod key;
pub mod keys;
pub mod sessions;

pub use audit::audit;
pub use key::{AdminKey, AdminKeyEntry, Scope};
pub use keys::rotate_keys;
pub use sessions::{
    create_session, elevate, erase_user, list_user_sessions, revoke_all, revoke_user_session,
};
