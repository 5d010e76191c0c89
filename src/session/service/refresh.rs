//! Native clients' refresh tokens: rotation, the grace window, proven reuse, and the client's
//! own revocation. The session id is public, so nothing here acts on a secret it cannot prove.

use super::*;
use crate::session::ports::{RefreshOutcome, RefreshRequest, RefreshRevocation};

/// How many rotations back a presented refresh secret is followed to prove it genuine. Each
/// step is one HMAC and one SHA-256 (about a microsecond), so a made-up secret costs at most
/// this many; a stolen token replayed after more rotations than this is refused as invalid
/// (it never works) but is not recognised as reuse.
pub const MAX_REFRESH_GENERATIONS: usize = 256;

/// Why a refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("refresh token unknown or expired")]
    Invalid,
    #[error("refresh token reused; session revoked")]
    Reused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SessionService {
    /// Spends a refresh token: the current one rotates; its immediate predecessor within
    /// `grace_ms` gets the very same successor; a *proven* older generation ends the session
    /// (`refresh_token_reused`, audited and pushed). Anything else is invalid and changes
    /// nothing: the session id is public, so a made-up secret must not be able to end it.
    #[tracing::instrument(name = "Refresh", skip_all, fields(session.id = %presented.id()))]
    pub async fn refresh(
        &self,
        presented: &RefreshToken,
        grace_ms: i64,
        now: UnixMillis,
    ) -> Result<(Session, RefreshToken), RefreshError> {
        let mac = self.mac()?;
        let successor = presented.successor(&mac);
        let outcome = self
            .store
            .refresh(RefreshRequest {
                id: presented.id(),
                presented_hash: &presented.hash(),
                successor_hash: &successor.hash(),
                now,
                grace_ms,
                default_idle_ms: self.policy.idle_timeout_ms,
            })
            .await?;
        let ended_by_reuse = |user: String| async move {
            self.feed.flush(presented.id().tag()).await;
            self.audit(
                AuditEvent::new("refresh_token_reused", &Actor::system(), now)
                    .user(&user)
                    .session(presented.id().as_str())
                    .reason("a spent refresh token was presented again; session revoked"),
            )
            .await;
            RefreshError::Reused
        };
        let record = match outcome {
            RefreshOutcome::Rotated(record) | RefreshOutcome::Grace(record)
                if self
                    .gate
                    .admits(record.user_id.as_str(), record.from_users_file) =>
            {
                *record
            }
            RefreshOutcome::Rotated(record) | RefreshOutcome::Grace(record) => {
                self.end_refused(presented.id(), &record.user_id).await?;
                return Err(RefreshError::Invalid);
            }
            RefreshOutcome::Reused(user) => return Err(ended_by_reuse(user).await),
            RefreshOutcome::Mismatch { current, user } => {
                if !presented.is_earlier_generation_of(&current, &mac, MAX_REFRESH_GENERATIONS) {
                    return Err(RefreshError::Invalid);
                }
                if !self.store.revoke(presented.id(), &user).await? {
                    return Err(RefreshError::Invalid);
                }
                return Err(ended_by_reuse(user.as_str().to_owned()).await);
            }
            RefreshOutcome::Unknown => return Err(RefreshError::Invalid),
        };
        Ok((
            Session {
                id: presented.id().clone(),
                record,
            },
            successor,
        ))
    }

    /// A native client's own logout: ends the session of `presented` when it is the current or
    /// the last spent refresh secret, or a proven older generation (then it is also reuse, and
    /// audited as such). `false`, and nothing changed, for anything else.
    #[tracing::instrument(name = "Revoke by refresh token", skip_all, fields(session.id = %presented.id()))]
    pub async fn revoke_by_refresh(
        &self,
        presented: &RefreshToken,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        let mac = self.mac()?;
        let outcome = self
            .store
            .revoke_by_refresh(presented.id(), &presented.hash())
            .await?;
        let (user, reason) = match outcome {
            RefreshRevocation::Revoked(user) => (user, "refresh token revoked by its client"),
            RefreshRevocation::Mismatch { current, user }
                if presented.is_earlier_generation_of(&current, &mac, MAX_REFRESH_GENERATIONS) =>
            {
                if !self.store.revoke(presented.id(), &user).await? {
                    return Ok(false);
                }
                (
                    user,
                    "a spent refresh token was presented again; session revoked",
                )
            }
            RefreshRevocation::Mismatch { .. } | RefreshRevocation::Unknown => return Ok(false),
        };
        self.feed.flush(presented.id().tag()).await;
        let event = if reason.starts_with("a spent") {
            "refresh_token_reused"
        } else {
            "session_revoked"
        };
        self.audit(
            AuditEvent::new(event, &Actor::user(user.as_str()), now)
                .user(user.as_str())
                .session(presented.id().as_str())
                .reason(reason),
        )
        .await;
        Ok(true)
    }
}
