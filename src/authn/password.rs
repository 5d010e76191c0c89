//! Argon2id password checks, run on the blocking thread pool behind a bounded semaphore so a
//! login storm can neither stall the async workers nor queue without bound.

use argon2::password_hash::PasswordVerifier;
use argon2::Argon2;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Longest password accepted (hashing cost grows with input; nobody types more).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// The hasher is saturated: answer 503 and let the client retry.
#[derive(Debug, thiserror::Error)]
#[error("password hashing capacity exhausted")]
pub struct Busy;

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    queue_wait: Duration,
    /// Verified instead when the user does not exist, so unknown users cost the same time.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// `concurrency` hashes at once; a request waits at most `queue_wait` for a slot.
    pub fn new(concurrency: usize, queue_wait: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            queue_wait,
            dummy_hash: hash_password("tessera-dummy-password").into(),
        }
    }

    /// Checks `password` against `hash` (or the dummy when `hash` is None, always false).
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, Busy> {
        self.slot().await?.verify(password, hash).await
    }

    /// Waits (at most `queue_wait`) for a hashing slot. Taken *before* a guess is counted, so
    /// a saturated hasher (503) never turns a right password into a counted failure.
    pub async fn slot(&self) -> Result<Slot, Busy> {
        let permit = tokio::time::timeout(self.queue_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        Ok(Slot {
            permit,
            dummy_hash: self.dummy_hash.clone(),
        })
    }
}

/// A reserved hashing slot: one verification.
pub struct Slot {
    permit: tokio::sync::OwnedSemaphorePermit,
    dummy_hash: Arc<str>,
}

impl Slot {
    /// Checks `password` against `hash` (or the dummy when `hash` is None, always false).
    pub async fn verify(self, password: &str, hash: Option<&str>) -> Result<bool, Busy> {
        let permit = self.permit;
        let known = hash.is_some();
        let hash = hash
            .map(str::to_owned)
            .unwrap_or_else(|| self.dummy_hash.to_string());
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            password.len() <= MAX_PASSWORD_LEN && verify_password(&password, &hash)
        })
        .await
        .map_err(|_| Busy)?;
        Ok(ok && known)
    }
}

/// An argon2id PHC string with the crate's recommended parameters and a random salt.
pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::PasswordHasher as _;
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 hashing with default parameters cannot fail")
        .to_string()
}

fn verify_password(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_real_hashes_and_never_the_dummy() {
        let hasher = PasswordHasher::new(2, Duration::from_secs(5));
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"));
        assert!(hasher.verify("correct horse", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("wrong", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("tessera-dummy-password", None).await.unwrap());
        let huge = "x".repeat(MAX_PASSWORD_LEN + 1);
        assert!(!hasher.verify(&huge, Some(&hash)).await.unwrap());
    }

    #[tokio::test]
    async fn a_saturated_hasher_says_busy_instead_of_queueing_forever() {
        let hasher = PasswordHasher::new(1, Duration::from_millis(1));
        let _held = hasher.permits.clone().acquire_owned().await.unwrap();
        assert!(hasher.verify("x", None).await.is_err());
    }
}
