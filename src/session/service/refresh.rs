//! Native clients' refresh tokens: rotation, the grace window, proven reuse, and the client's
//! own revocation. The session id is public, so nothing here acts on a secret it cannot prove.

use super::*;
use crate::session::ports::{RefreshOutcome, RefreshRequest, RefreshRevocation};
use crate::session::SecretHash;

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
            .await
            // A reuse may have ended the session before the error (see `flush_soon`).
            .inspect_err(|_| self.feed.flush_soon(presented.id().tag()))?;
        crate::meters::refresh(match outcome {
            RefreshOutcome::Rotated(_) => "rotated",
            RefreshOutcome::Grace(_) => "grace",
            _ => "refused",
        });
        let record = match outcome {
            RefreshOutcome::Rotated(record) | RefreshOutcome::Grace(record) => *record,
            RefreshOutcome::Reused(user) => {
                self.audit_reuse(presented, &user, now).await;
                return Err(RefreshError::Reused);
            }
            RefreshOutcome::Mismatch { current, user } => {
                return Err(
                    if self
                        .end_if_reused(presented, &current, &user, &mac, now)
                        .await?
                    {
                        RefreshError::Reused
                    } else {
                        RefreshError::Invalid
                    },
                );
            }
            RefreshOutcome::Unknown => return Err(RefreshError::Invalid),
        };
        if self.ended_if_refused(presented.id(), &record, now).await? {
            return Err(RefreshError::Invalid);
        }
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
            .await
            .inspect_err(|_| self.feed.flush_soon(presented.id().tag()))?;
        match outcome {
            RefreshRevocation::Revoked(user) => {
                let id = presented.id();
                self.feed.flush_region(id.region(), id.tag()).await;
                self.audit(
                    AuditEvent::new("session_revoked", &Actor::user(user.as_str()), now)
                        .user(user.as_str())
                        .session(presented.id().as_str())
                        .reason("refresh token revoked by its client"),
                )
                .await;
                Ok(true)
            }
            RefreshRevocation::Mismatch { current, user } => {
                self.end_if_reused(presented, &current, &user, &mac, now)
                    .await
            }
            RefreshRevocation::Unknown => Ok(false),
        }
    }

    /// A secret that is neither the current nor the last spent one ends the session only when
    /// it is proven a genuine older generation (reuse); anything else changes nothing.
    async fn end_if_reused(
        &self,
        presented: &RefreshToken,
        current: &SecretHash,
        user: &UserId,
        mac: impl Fn(&[u8]) -> [u8; 32],
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        if !presented.is_earlier_generation_of(current, mac, MAX_REFRESH_GENERATIONS)
            || !self
                .store
                .revoke(presented.id(), user)
                .await
                .inspect_err(|_| self.feed.flush_soon(presented.id().tag()))?
        {
            return Ok(false);
        }
        self.audit_reuse(presented, user.as_str(), now).await;
        Ok(true)
    }

    /// A reused refresh token ended its session: pushed now, and audited.
    async fn audit_reuse(&self, presented: &RefreshToken, user: &str, now: UnixMillis) {
        let id = presented.id();
        self.feed.flush_region(id.region(), id.tag()).await;
        self.audit(
            AuditEvent::new("refresh_token_reused", &Actor::system(), now)
                .user(user)
                .session(presented.id().as_str())
                .reason("a spent refresh token was presented again; session revoked"),
        )
        .await;
    }
}
