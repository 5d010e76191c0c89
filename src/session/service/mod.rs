//! The session service: the one place where a presented credential becomes a live session.

use super::credential::{RefreshToken, SessionSecret, SessionToken};
use super::id::{Region, SessionId, UserId};
use super::model::{
    clip, Acr, NewSession, RefreshState, Session, SessionRecord, MAX_DEVICE_NAME, MAX_USER_AGENT,
};
use super::policy::{LimitPolicy, Liveness, SessionPolicy};
use super::ports::{
    AccessToken, AdmitAll, CreateError, CreateRequest, Listing, MintError, NoFeed,
    NoPushedRevocations, PushedRevocations, RevocationSink, SessionStore, StoreError, SuccessorMac,
    TokenIssuer, UserGate,
};
use super::UnixMillis;
use crate::audit::{Actor, AuditEvent, Auditor};
use crate::clock::SharedClock;
use std::sync::Arc;

mod grants;
mod refresh;
mod screening;

pub use refresh::{RefreshError, MAX_REFRESH_GENERATIONS};

/// Why a credential did not yield a live session.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown, expired, revoked or wrong secret: all look the same to the client.
    #[error("no valid session")]
    NoSession,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a session check reads the record.
#[derive(Clone, Copy)]
enum Read {
    Redis,
    NearCache,
}

/// Creates, authenticates and ends sessions. Cheap to clone.
#[derive(Clone)]
pub struct SessionService {
    store: Arc<dyn SessionStore>,
    issuer: Arc<dyn TokenIssuer>,
    policy: SessionPolicy,
    limit: LimitPolicy,
    /// Per-role maximum sessions; the strictest matching role wins.
    role_limits: Arc<std::collections::HashMap<String, u32>>,
    home: Region,
    regions: Arc<[Region]>,
    audit: Arc<dyn Auditor>,
    feed: Arc<dyn RevocationSink>,
    gate: Arc<dyn UserGate>,
    clock: SharedClock,
    successor_mac: Option<Arc<dyn SuccessorMac>>,
    pushed: Arc<dyn PushedRevocations>,
}

impl SessionService {
    pub fn new(
        store: Arc<dyn SessionStore>,
        issuer: Arc<dyn TokenIssuer>,
        policy: SessionPolicy,
        limit: LimitPolicy,
        home: Region,
        regions: Vec<Region>,
        audit: Arc<dyn Auditor>,
    ) -> Self {
        Self {
            store,
            issuer,
            policy,
            limit,
            role_limits: Arc::default(),
            home,
            regions: regions.into(),
            audit,
            feed: Arc::new(NoFeed),
            gate: Arc::new(AdmitAll),
            clock: crate::clock::system(),
            successor_mac: None,
            pushed: Arc::new(NoPushedRevocations),
        }
    }

    /// Checks every loaded session against the revocations pushed to this node: a session
    /// stamped below its user's pushed minimum version (a revoke-all that its index did not
    /// lead to) dies on its next use, without a second Redis read on the hot path.
    pub fn with_pushed_revocations(mut self, pushed: Arc<dyn PushedRevocations>) -> Self {
        self.pushed = pushed;
        self
    }

    /// Enables refresh tokens: their successors are derived under `mac`.
    pub fn with_successor_mac(mut self, mac: Arc<dyn SuccessorMac>) -> Self {
        self.successor_mac = Some(mac);
        self
    }

    fn mac(&self) -> Result<impl Fn(&[u8]) -> [u8; 32] + '_, StoreError> {
        let mac = self.successor_mac.as_deref().ok_or_else(|| {
            StoreError::Other(anyhow::anyhow!("this process holds no refresh key"))
        })?;
        Ok(move |data: &[u8]| mac.mac(data))
    }

    /// Reads time from `clock` (a `TestClock` in tests) for audit stamps and the operations
    /// that take no `now` of their own.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The service's clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Asks `gate` on every use of a session whether its user is still let in.
    pub fn with_gate(mut self, gate: Arc<dyn UserGate>) -> Self {
        self.gate = gate;
        self
    }

    /// False for a user the users file has disabled (access tokens: no more is known).
    pub fn admits(&self, user: &str) -> bool {
        self.gate.admits(user, false)
    }

    /// Moves the revocations the store's scripts write to each tag's outbox on to `feed`.
    pub fn with_feed(mut self, feed: Arc<dyn RevocationSink>) -> Self {
        self.feed = feed;
        self
    }

    /// Moves pending revocations of this tag to the feed now (the sweep catches up otherwise).
    pub async fn flush_revocations(&self, tag: &str) {
        self.feed.flush(tag).await;
    }

    /// Per-role session limits (e.g. `admin = 2`); a user's strictest matching role applies.
    pub fn with_role_limits(mut self, limits: std::collections::HashMap<String, u32>) -> Self {
        self.role_limits = Arc::new(limits);
        self
    }

    /// The limit for a user with these roles.
    pub fn limit_for(&self, roles: &[String]) -> LimitPolicy {
        let max = roles
            .iter()
            .filter_map(|r| self.role_limits.get(r))
            .min()
            .copied()
            .unwrap_or(self.limit.max_sessions);
        LimitPolicy {
            max_sessions: max.max(1),
            on_limit: self.limit.on_limit,
        }
    }

    /// Records an audit event (never fails the caller).
    pub async fn audit(&self, event: AuditEvent) {
        self.audit.record(event).await;
    }

    /// Records an audit event without making the caller wait for it: for answers whose timing
    /// must not depend on what is recorded (a known user's failure also writes their own list).
    pub fn audit_detached(&self, event: AuditEvent) {
        let audit = self.audit.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { audit.record(event).await });
            }
            Err(_) => crate::audit::log(&event),
        }
    }

    /// The regions whose session ids this node accepts.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Starts a session in the home region and returns it with its (only) plain credential.
    #[tracing::instrument(name = "Create session", skip_all, fields(user.id = %new.user_id, session.id))]
    pub async fn create(
        &self,
        new: NewSession,
        actor: &Actor,
        now: UnixMillis,
    ) -> Result<(Session, SessionToken), CreateError> {
        self.create_checked(new, None, actor, now).await
    }

    /// Like `create`, but refuses (`CredentialVersionChanged`) unless the user's credential
    /// version is still `expected_version`, read before the credentials were checked: a login
    /// racing a password change loses.
    pub async fn create_checked(
        &self,
        new: NewSession,
        expected_version: Option<u64>,
        actor: &Actor,
        now: UnixMillis,
    ) -> Result<(Session, SessionToken), CreateError> {
        let id = SessionId::generate(&self.home, &new.user_id);
        tracing::Span::current().record("session.id", tracing::field::display(&id));
        let secret = SessionSecret::generate();
        let idle_timeout_ms = new.native.as_ref().map(|n| n.idle_timeout_ms).unwrap_or(0);
        let mut policy = self.policy.for_idle(idle_timeout_ms);
        if let Some(native) = &new.native {
            policy.absolute_timeout_ms = native.absolute_timeout_ms.max(policy.idle_timeout_ms);
        }
        let (idle, absolute) = policy.initial_deadlines(now);
        let mut record = SessionRecord {
            user_id: new.user_id.clone(),
            credential_version: 0,
            created_at: now,
            last_seen_at: now,
            idle_expires_at: idle,
            expires_at: absolute,
            auth_time: new.auth_time.unwrap_or(now).min(now),
            acr: new.acr,
            amr: new.amr.clone(),
            elevated_at: 0,
            elevated_acr: None,
            anomaly_at: 0,
            secret_hash: secret.hash(),
            ip: clip(&new.ip, 45),
            ua: clip(&new.user_agent, MAX_USER_AGENT),
            device_name: clip(&new.device_name, MAX_DEVICE_NAME),
            roles: new.roles.clone(),
            idle_timeout_ms,
            from_users_file: new.fingerprint.is_some(),
            refresh: new.native.as_ref().map(|n| RefreshState {
                current: n.refresh_hash.clone(),
                previous: None,
                rotated_at: 0,
            }),
        };
        let ttl = policy.ttl_ms(now, idle, absolute);
        let created = self
            .store
            .create(CreateRequest {
                id: &id,
                user: &new.user_id,
                record: &record,
                ttl_ms: ttl,
                limit: self.limit_for(&new.roles),
                expected_version,
                fingerprint: new.fingerprint.as_deref(),
                now,
            })
            .await?;
        record.credential_version = created.credential_version;
        if !created.evicted.is_empty() || !created.orphans.is_empty() || created.version_moved {
            self.feed.flush(id.tag()).await;
        }
        for orphan in &created.orphans {
            self.audit(
                AuditEvent::new("session_revoked", &Actor::system(), now)
                    .user(record.user_id.as_str())
                    .session(orphan)
                    .reason("created under an unknown users-file entry"),
            )
            .await;
        }
        for evicted in &created.evicted {
            self.audit(
                AuditEvent::new("session_evicted", &Actor::system(), now)
                    .user(record.user_id.as_str())
                    .session(evicted)
                    .reason("session_limit"),
            )
            .await;
        }
        self.audit(
            AuditEvent::new("session_created", actor, now)
                .user(record.user_id.as_str())
                .session(id.as_str())
                .ip(&record.ip)
                .reason(record.acr.as_str()),
        )
        .await;
        let token = SessionToken::new(id.clone(), secret);
        Ok((Session { id, record }, token))
    }

    /// Turns a presented token into a live session, renewing it when the policy says so.
    #[tracing::instrument(name = "Authenticate session", skip_all, fields(session.id = %token.id()))]
    pub async fn authenticate(
        &self,
        token: &SessionToken,
        now: UnixMillis,
    ) -> Result<Session, AuthError> {
        self.authenticate_from(token, now, Read::Redis).await
    }

    /// `authenticate` for a low-risk read: the record may come from this node's near cache.
    /// Everything else is as in `authenticate` (secret, users file, pushed revocations, idle
    /// and absolute deadlines, renewal in Redis).
    pub async fn authenticate_low_risk(
        &self,
        token: &SessionToken,
        now: UnixMillis,
    ) -> Result<Session, AuthError> {
        self.authenticate_from(token, now, Read::NearCache).await
    }

    async fn authenticate_from(
        &self,
        token: &SessionToken,
        now: UnixMillis,
        read: Read,
    ) -> Result<Session, AuthError> {
        let record = match read {
            Read::Redis => self.store.load(token.id()).await?,
            Read::NearCache => self.store.load_cached(token.id()).await?,
        }
        .ok_or(AuthError::NoSession)?;
        let user = record.user_id.clone();
        let stored = record.secret_hash.clone();
        // The hash comparison is constant time; the tag check only guards against a record that
        // does not belong under this id at all.
        if !token.secret().hash().matches(&stored) || !user.has_tag(token.id().tag()) {
            return Err(AuthError::NoSession);
        }
        if self.ended_if_refused(token.id(), &record, now).await? {
            return Err(AuthError::NoSession);
        }
        let mut session = Session {
            id: token.id().clone(),
            record,
        };
        let policy = self.policy.for_idle(session.record.idle_timeout_ms);
        let liveness = if self.pushed.is_fresh(now) {
            policy.check(
                now,
                session.record.last_seen_at,
                session.record.idle_expires_at,
                session.record.expires_at,
            )
        } else {
            policy.check_in_redis(
                now,
                session.record.idle_expires_at,
                session.record.expires_at,
            )
        };
        match liveness {
            Liveness::Expired => Err(AuthError::NoSession),
            Liveness::Live => Ok(session),
            Liveness::Renew {
                idle_expires_at,
                ttl_ms,
            } => {
                let renewed = self
                    .store
                    .renew(
                        &session.id,
                        &user,
                        &session.record.secret_hash,
                        now,
                        idle_expires_at,
                        ttl_ms,
                    )
                    .await?;
                if !renewed {
                    return Err(AuthError::NoSession);
                }
                session.record.last_seen_at = now;
                session.record.idle_expires_at = idle_expires_at;
                Ok(session)
            }
        }
    }

    /// Ends a session (the caller has authenticated it). `false` if it was already gone.
    #[tracing::instrument(name = "Revoke session", skip_all, fields(session.id = %session.id))]
    pub async fn revoke(
        &self,
        session: &Session,
        actor: &Actor,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let user = session.record.user_id.clone();
        let revoked = self
            .store
            .revoke(&session.id, &user)
            .await
            .inspect_err(|_| self.feed.flush_soon(session.id.tag()))?;
        if revoked {
            self.feed
                .flush_region(session.id.region(), session.id.tag())
                .await;
            self.audit(
                AuditEvent::new("session_revoked", actor, self.clock.now_ms())
                    .user(user.as_str())
                    .session(session.id.as_str())
                    .reason(reason),
            )
            .await;
        }
        Ok(revoked)
    }

    /// A live session by id, without a credential (admin paths only).
    pub async fn load(
        &self,
        id: &SessionId,
        now: UnixMillis,
    ) -> Result<Option<Session>, StoreError> {
        let Some(record) = self.store.load(id).await? else {
            return Ok(None);
        };
        if self.ended_if_refused(id, &record, now).await? {
            return Ok(None);
        }
        let live = !matches!(
            self.policy.check(
                now,
                record.last_seen_at,
                record.idle_expires_at,
                record.expires_at
            ),
            Liveness::Expired
        );
        Ok(live.then(|| Session {
            id: id.clone(),
            record,
        }))
    }

    /// Ends the loaded session `id` when the users file no longer lets its user in (disabled,
    /// or gone from a file that created it) or a revocation pushed to this node covers it (a
    /// revoke-all its index did not lead to). Ended, not merely refused: refusing alone would
    /// let it live again if the file changed back. True when it was refused.
    async fn ended_if_refused(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        let user = &record.user_id;
        let refused = !self.gate.admits(user.as_str(), record.from_users_file)
            || self
                .pushed
                .is_revoked(id.as_str(), user.as_str(), record.credential_version, now);
        if refused
            && self
                .store
                .revoke(id, user)
                .await
                .inspect_err(|_| self.feed.flush_soon(id.tag()))?
        {
            self.feed.flush_region(id.region(), id.tag()).await;
            self.audit(
                AuditEvent::new("session_revoked", &Actor::system(), self.clock.now_ms())
                    .user(user.as_str())
                    .session(id.as_str())
                    .reason("the users file or a pushed revocation no longer lets it in"),
            )
            .await;
        }
        Ok(refused)
    }

    /// Ends every session of the user and bumps the credential version.
    #[tracing::instrument(name = "Revoke all sessions", skip_all, fields(user.id = %user))]
    pub async fn revoke_all(
        &self,
        user: &UserId,
        actor: &Actor,
        reason: &str,
    ) -> Result<u64, StoreError> {
        let n = self
            .store
            .revoke_all(user)
            .await
            .inspect_err(|_| self.feed.flush_soon(&user.tag()))?;
        self.feed.flush(&user.tag()).await;
        crate::meters::sessions_revoked(
            crate::meters::revocation_reason(reason, actor.as_str()),
            n,
        );
        self.audit(
            AuditEvent::new("credential_version_bumped", actor, self.clock.now_ms())
                .user(user.as_str())
                .reason(&format!("{reason}; {n} sessions revoked")),
        )
        .await;
        Ok(n)
    }

    /// Erases the user: every session, the index, version, fingerprint and TOTP state.
    pub async fn erase_user(&self, user: &UserId, actor: &Actor) -> Result<u64, StoreError> {
        let n = self
            .store
            .erase_user(user)
            .await
            .inspect_err(|_| self.feed.flush_soon(&user.tag()))?;
        self.feed.flush(&user.tag()).await;
        crate::meters::sessions_revoked("erased", n);
        self.audit(
            AuditEvent::new("user_erased", actor, self.clock.now_ms())
                .user(user.as_str())
                .reason(&format!("{n} sessions revoked")),
        )
        .await;
        Ok(n)
    }

    pub async fn credential_version(&self, user: &UserId) -> Result<u64, StoreError> {
        self.store.credential_version(user).await
    }

    /// Gives the session a new secret, keeping its id; with `elevation`, records the step-up.
    /// The presented (old) secret stops working at once. `NoSession` if it was rotated or
    /// revoked meanwhile.
    #[tracing::instrument(name = "Rotate session secret", skip_all, fields(session.id = %session.id))]
    pub async fn rotate(
        &self,
        session: &mut Session,
        elevation: Option<Acr>,
        actor: &Actor,
        now: UnixMillis,
    ) -> Result<SessionToken, AuthError> {
        let secret = SessionSecret::generate();
        let new_hash = secret.hash();
        let rotated = self
            .store
            .rotate(
                &session.id,
                &session.record.secret_hash,
                &new_hash,
                elevation.map(|acr| (now, acr)),
            )
            .await?;
        if !rotated {
            return Err(AuthError::NoSession);
        }
        session.record.secret_hash = new_hash;
        let event = match elevation {
            Some(acr) => {
                session.record.elevated_at = now;
                session.record.elevated_acr = Some(acr);
                AuditEvent::new("session_elevated", actor, now).reason(acr.as_str())
            }
            None => AuditEvent::new("secret_rotated", actor, now),
        };
        self.audit(
            event
                .user(session.record.user_id.as_str())
                .session(session.id.as_str()),
        )
        .await;
        Ok(SessionToken::new(session.id.clone(), secret))
    }

    /// One live session of `user` by its id: `None` for another user's id, so nobody learns
    /// whether it exists (a 404 either way).
    pub async fn find(
        &self,
        user: &UserId,
        id: &str,
        now: UnixMillis,
    ) -> Result<Option<Session>, StoreError> {
        let listing = self.list(user, now).await?;
        // Not listed because its region did not answer is not "no such session".
        let region = id.split('_').nth(1).unwrap_or_default();
        if listing
            .unavailable_regions
            .iter()
            .any(|r| r.as_str() == region)
        {
            return Err(StoreError::Unavailable(anyhow::anyhow!(
                "region {region} did not answer"
            )));
        }
        let found = listing.sessions.into_iter().find(|s| s.id.as_str() == id);
        if found.is_none() {
            // Only kills look sessions up by id: "no such session" must be durable too.
            if let Ok(id) = SessionId::parse(id, &self.regions) {
                self.settle(&id).await?;
            }
        }
        Ok(found)
    }

    /// Waits until what was written about `id`'s session is on the replicas (see
    /// `SessionStore::confirm`); before answering "no such session" to a request that ends one.
    pub async fn settle(&self, id: &SessionId) -> Result<(), StoreError> {
        self.store.confirm(id).await
    }

    /// The user's live sessions, and the regions that did not answer.
    pub async fn list(&self, user: &UserId, now: UnixMillis) -> Result<Listing, StoreError> {
        self.store.list(user, now).await
    }

    /// Mints a short-lived JWT for a live session.
    pub fn mint(
        &self,
        session: &Session,
        audience: Option<&str>,
        now: UnixMillis,
    ) -> Result<AccessToken, MintError> {
        self.issuer.mint(session, audience, now)
    }
}
