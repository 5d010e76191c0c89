//! Credential checks for Tessera's own login: the users file (argon2id passwords, optional
//! TOTP), password hashing off the async workers, and the pure rate-limit policy.

pub mod directory;
pub mod guess;
pub mod limits;
pub mod login;
pub mod password;
pub mod ports;
pub mod totp;

pub use directory::{Directory, User};
pub use password::PasswordHasher;
