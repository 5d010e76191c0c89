//! What the session core needs from the outside world, named by the core and implemented at
//! the edge (`store/`, `token/`).

use super::credential::SecretHash;
use super::id::{SessionId, UserId};
use super::model::{Acr, Session, SessionRecord};
use super::policy::LimitPolicy;
use super::UnixMillis;
use async_trait::async_trait;

/// Failures of a session store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached or did not answer in time: callers fail closed (503).
    #[error("session store unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Other(anyhow::Error),
}

/// Why no session was created: the two refusals only creation can give, or a store failure.
/// (Every other operation fails only as `StoreError`: an error enum per operation would repeat
/// those two variants a dozen times and tell a caller nothing more.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The user's credential version (or users-file entry) moved since the caller checked the
    /// credentials.
    #[error("the user's credentials changed while the session was being created")]
    CredentialVersionChanged,
    /// The user holds the maximum number of sessions and the policy is `reject`.
    #[error("session limit reached")]
    LimitReached,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything a store needs to create one session.
#[derive(Debug, Clone, Copy)]
pub struct CreateRequest<'a> {
    pub id: &'a SessionId,
    pub user: &'a UserId,
    pub record: &'a SessionRecord,
    /// Redis TTL: the nearer of the idle and absolute deadlines.
    pub ttl_ms: i64,
    pub limit: LimitPolicy,
    /// Refuse unless the user's credential version is still this (None: take whatever it is).
    pub expected_version: Option<u64>,
    /// The users-file fingerprint the credentials were checked against (None: a user from
    /// elsewhere). Creation refuses when the stored one differs (see `store/lua/create.lua`).
    pub fingerprint: Option<&'a str>,
    pub now: UnixMillis,
}

/// One refresh attempt.
#[derive(Debug, Clone, Copy)]
pub struct RefreshRequest<'a> {
    pub id: &'a SessionId,
    pub presented_hash: &'a SecretHash,
    pub successor_hash: &'a SecretHash,
    pub now: UnixMillis,
    pub grace_ms: i64,
    pub default_idle_ms: i64,
}

/// What the store made of a refresh token.
#[derive(Debug, Clone)]
pub enum RefreshOutcome {
    /// Current token: rotated; the record after rotation.
    Rotated(Box<SessionRecord>),
    /// Immediate predecessor within the grace window: same successor as before.
    Grace(Box<SessionRecord>),
    /// A spent token presented again: the session was ended. Carries the user id.
    Reused(String),
    /// A live native session whose current and previous secrets are not the presented one.
    /// Nothing changed; the caller decides whether it is an older generation (reuse) or junk.
    Mismatch { current: SecretHash, user: UserId },
    /// No such live native session.
    Unknown,
}

/// What the store made of a refresh token presented for revocation.
#[derive(Debug, Clone)]
pub enum RefreshRevocation {
    /// The current or last spent secret: the session was ended.
    Revoked(UserId),
    /// A live native session whose current and previous secrets are not the presented one.
    Mismatch { current: SecretHash, user: UserId },
    /// No such live native session.
    Unknown,
}

/// Result of a successful creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The user's credential version now stamped on the session.
    pub credential_version: u64,
    /// Sessions ended to respect the limit (policy `evict`).
    pub evicted: Vec<String>,
    /// Sessions ended because no users-file fingerprint vouched for them.
    pub orphans: Vec<String>,
    /// No fingerprint was stored: the user's version moved (and the move was pushed), so
    /// sessions nobody listed die too.
    pub version_moved: bool,
}

/// A user's live sessions across regions, and the regions that did not answer in time (their
/// sessions are missing from `sessions`, and the caller says so instead of hiding it).
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub sessions: Vec<Session>,
    pub unavailable_regions: Vec<super::id::Region>,
}

/// Session persistence. Every multi-key change is atomic in the implementation.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session, prunes the user's index and enforces `limit`, all at once.
    /// With `expected_version`, refuses if the user's credential version differs.
    async fn create(&self, request: CreateRequest<'_>) -> Result<Created, CreateError>;

    /// The stored record, or `None` when there is no such live session.
    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError>;

    /// `load` for a low-risk read, which may be answered from this node's near cache (kept
    /// coherent with Redis; see `store::near_cache`). Never for a write or a high-risk check.
    async fn load_cached(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.load(id).await
    }

    /// Moves the idle deadline, only if the session still exists with this secret hash
    /// (no write may resurrect a deleted session). `false` when it is gone.
    async fn renew(
        &self,
        id: &SessionId,
        user: &UserId,
        secret_hash: &SecretHash,
        now: UnixMillis,
        idle_expires_at: UnixMillis,
        ttl_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Deletes the session and its index entry. `false` when it was already gone.
    async fn revoke(&self, id: &SessionId, user: &UserId) -> Result<bool, StoreError>;

    /// The user's live sessions, pruning expired index entries on the way.
    async fn list(&self, user: &UserId, now: UnixMillis) -> Result<Listing, StoreError>;

    /// Ends every session of the user and bumps the credential version, atomically.
    /// Returns how many sessions were ended.
    async fn revoke_all(&self, user: &UserId) -> Result<u64, StoreError>;

    /// Deletes every session and every per-user key of the user.
    async fn erase_user(&self, user: &UserId) -> Result<u64, StoreError>;

    /// The user's current credential version (0 if never bumped).
    async fn credential_version(&self, user: &UserId) -> Result<u64, StoreError>;

    /// Replaces the secret hash (and records a step-up when `elevation` is given), only if the
    /// session still exists with `old_hash`. `false` when it is gone or was rotated meanwhile.
    async fn rotate(
        &self,
        id: &SessionId,
        old_hash: &SecretHash,
        new_hash: &SecretHash,
        elevation: Option<(UnixMillis, Acr)>,
    ) -> Result<bool, StoreError>;

    /// Records the session's first anomaly at `now`; `true` only for the call that recorded it.
    async fn mark_anomaly(&self, id: &SessionId, now: UnixMillis) -> Result<bool, StoreError>;

    /// Ends a native session whose current (or last spent) refresh secret hashes to
    /// `presented_hash`; see `store/lua/revoke_refresh.lua`. Never acts on anything else.
    async fn revoke_by_refresh(
        &self,
        id: &SessionId,
        presented_hash: &SecretHash,
    ) -> Result<RefreshRevocation, StoreError>;

    /// Spends a native session's refresh token (see `store/lua/refresh.lua`).
    async fn refresh(&self, request: RefreshRequest<'_>) -> Result<RefreshOutcome, StoreError>;

    /// Stores a single-use grant for one operation (`digest`) at level `acr`.
    async fn put_grant(
        &self,
        id: &SessionId,
        digest: &str,
        acr: Acr,
        ttl_ms: i64,
    ) -> Result<(), StoreError>;

    /// Takes (deletes) the grant; its level if it existed.
    async fn take_grant(&self, id: &SessionId, digest: &str) -> Result<Option<Acr>, StoreError>;

    /// Confirms that what was written about `id`'s session (its revocation, perhaps by an
    /// earlier request answered 503) has reached the replicas `redis_wait_replicas` asks for.
    /// Called before a request that ends a session answers "no such session": a retry must not
    /// get a final answer for a revocation that may still be lost in a failover.
    async fn confirm(&self, _id: &SessionId) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The revocations pushed to this node (the feed): what the session service checks a loaded
/// session against on every use, in memory, between the Redis-side checks of its renewals.
pub trait PushedRevocations: Send + Sync {
    /// True when `sid` was revoked, or `user`'s versions below `version`'s successor were.
    fn is_revoked(&self, sid: &str, user: &str, version: u64, now: UnixMillis) -> bool;
    /// False while the feed is stale: then nothing pushed can be relied on, and every use of a
    /// session is checked in Redis instead.
    fn is_fresh(&self, _now: UnixMillis) -> bool {
        true
    }
}

/// Knows of no pushed revocation (processes that do not follow the feed).
pub struct NoPushedRevocations;

impl PushedRevocations for NoPushedRevocations {
    fn is_revoked(&self, _: &str, _: &str, _: u64, _: UnixMillis) -> bool {
        false
    }
}

/// Derives a refresh token's successor (HMAC-SHA256 under a server key: the KEK's refresh
/// subkey), so Redis never holds more than hashes and only the server can walk a chain.
pub trait SuccessorMac: Send + Sync {
    fn mac(&self, data: &[u8]) -> [u8; 32];
}

/// Whether a user may still use a session at all (the users file's `disabled`): asked on every
/// authentication, refresh and token check, so it holds even when Redis forgot a revocation.
pub trait UserGate: Send + Sync {
    /// `from_users_file`: the session was created for a user of the users file, so it needs
    /// the user to still be there.
    fn admits(&self, user: &str, from_users_file: bool) -> bool;
}

/// Admits everyone: for processes with no users file (embedded guards).
pub struct AdmitAll;

impl UserGate for AdmitAll {
    fn admits(&self, _: &str, _: bool) -> bool {
        true
    }
}

/// Moves revocations from a tag's outbox (written atomically by the store's scripts) to the
/// region's feed, so stateless verifiers learn of them.
#[async_trait]
pub trait RevocationSink: Send + Sync {
    /// Best effort and at least once: what is not moved now, the background sweep moves later.
    /// Every region's outbox of the tag (after a change that acted in every region).
    async fn flush(&self, tag: &str);

    /// Only `region`'s outbox of the tag (after a change to one session, which lives there).
    async fn flush_region(&self, _region: &str, tag: &str) {
        self.flush(tag).await
    }

    /// After a change whose outcome is unknown (its reply was lost, or replicas did not
    /// confirm it): the script may have run and left revocations in the tag's outboxes, so
    /// they are moved within a second (retried until they are), not at the next sweep pass.
    fn flush_soon(&self, _tag: &str) {}
}

/// For processes that do not publish (embedded guards).
pub struct NoFeed;

#[async_trait]
impl RevocationSink for NoFeed {
    async fn flush(&self, _: &str) {}
}

/// A minted access token.
#[derive(Clone)]
pub struct AccessToken {
    pub token: String,
    pub expires_in_secs: u64,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessToken(<redacted>, {}s)", self.expires_in_secs)
    }
}

/// Why no access token could be minted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    #[error("audience is not on the allow-list")]
    UnknownAudience,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Mints short-lived JWTs for live sessions.
pub trait TokenIssuer: Send + Sync {
    fn mint(
        &self,
        session: &Session,
        audience: Option<&str>,
        now: UnixMillis,
    ) -> Result<AccessToken, MintError>;
}
