//! Tessera's own login and step-up: users file + argon2id + TOTP, throttled, racing nothing.

use super::directory::{Directory, SharedDirectory, User};
use super::guess::Reserved;
use super::limits::{network_of, LoginLimits};
use super::password::Slot;
use super::password::{Busy, PasswordHasher};
use super::ports::{AuthStore, CodePath, FingerprintSync, MfaTicket};
use super::totp;
use crate::audit::{Actor, AuditEvent};
use crate::session::model::NativeClient;
use crate::session::{
    Acr, NewSession, Session, SessionService, SessionToken, StoreError, UnixMillis, UserId,
};
use crate::session::{RefreshToken, SessionSecret};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// How long a pending MFA ticket lives.
pub const MFA_TICKET_TTL_SECS: u64 = 300;
/// Wrong TOTP codes one ticket survives.
pub const MFA_TICKET_MAX_FAILURES: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password: one answer for both.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("account disabled")]
    Disabled,
    #[error("too many attempts")]
    RateLimited { retry_after_secs: u64 },
    #[error("password hashing is saturated")]
    Busy,
    #[error("MFA ticket unknown, used or expired")]
    MfaTicketInvalid,
    #[error("wrong TOTP code")]
    TotpInvalid,
    #[error("TOTP code already used")]
    TotpReplayed,
    #[error("this session's user cannot step up here")]
    NotStepUpCapable,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Create(#[from] crate::session::ports::CreateError),
}

impl From<Busy> for LoginError {
    fn from(_: Busy) -> Self {
        LoginError::Busy
    }
}

/// Who is logging in from where.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: String,
    pub device_name: String,
    /// Set for native clients: they get a refresh token instead of a cookie.
    pub native: Option<NativeLifetimes>,
}

/// A finished login: the session, its credential, and for native clients a refresh token.
pub struct LoggedIn {
    pub session: Session,
    pub token: SessionToken,
    pub refresh: Option<RefreshToken>,
}

/// Lifetimes of native sessions (refresh-token clients).
#[derive(Clone, Copy, Debug)]
pub struct NativeLifetimes {
    pub idle_timeout_ms: i64,
    pub absolute_timeout_ms: i64,
}

pub enum LoginOutcome {
    Session(Box<LoggedIn>),
    /// Password accepted; `ticket` must come back with a TOTP code to `/v1/login/mfa`.
    MfaRequired {
        ticket: String,
    },
}

#[derive(Clone)]
pub struct LoginService {
    directory: SharedDirectory,
    hasher: PasswordHasher,
    store: Arc<dyn AuthStore>,
    sessions: SessionService,
    limits: LoginLimits,
}

impl LoginService {
    pub fn new(
        directory: SharedDirectory,
        hasher: PasswordHasher,
        store: Arc<dyn AuthStore>,
        sessions: SessionService,
        limits: LoginLimits,
    ) -> Self {
        Self {
            directory,
            hasher,
            store,
            sessions,
            limits,
        }
    }

    pub fn directory(&self) -> Arc<Directory> {
        self.directory.get()
    }

    /// Installs a reloaded users file and ends the sessions of every user whose entry changed
    /// (or disappeared). Safe to run on every node: the store makes it idempotent.
    pub async fn install(&self, directory: Directory) -> Result<(), StoreError> {
        // Install first: from this moment the old credentials no longer log anyone in. A login
        // that read the old credential version and races the bump below is refused at session
        // creation (`CredentialVersionChanged`).
        let directory = Arc::new(directory);
        let previous = self.directory.replace(directory.clone());
        for user in directory.users() {
            let synced = self
                .store
                .sync_fingerprint(&user.id, &user.fingerprint)
                .await?;
            if synced != FingerprintSync::Unchanged {
                self.sessions.flush_revocations(&user.id.tag()).await;
            }
            if let FingerprintSync::Changed(n) = synced {
                crate::meters::sessions_revoked("credentials_changed", n);
                self.sessions
                    .audit(
                        AuditEvent::new(
                            "credential_version_bumped",
                            &Actor::system(),
                            self.sessions.clock().now_ms(),
                        )
                        .user(user.id.as_str())
                        .reason(&format!("users file entry changed; {n} sessions revoked")),
                    )
                    .await;
            }
        }
        // Who was removed: what this node held, and what any node last installed (a node that
        // starts after the edit never held the removed users, but Redis remembers them).
        let mut removed: Vec<String> = self
            .store
            .known_users()
            .await?
            .into_iter()
            .chain(previous.users().map(|u| u.id.as_str().to_owned()))
            .filter(|id| directory.by_id(id).is_none())
            .collect();
        removed.sort();
        removed.dedup();
        for gone in &removed {
            let Ok(gone) = UserId::parse(gone) else {
                continue;
            };
            self.sessions
                .revoke_all(&gone, &Actor::system(), "user removed from the users file")
                .await?;
        }
        let current: Vec<String> = directory
            .users()
            .map(|u| u.id.as_str().to_owned())
            .collect();
        self.store.set_known_users(&current, &removed).await?;
        Ok(())
    }

    /// Refuses before any hashing when the IP or the username is being hammered; otherwise
    /// takes a hashing slot (503 when saturated, before anything is counted) and reserves this
    /// password guess (a failure until `Reserved::right`).
    async fn throttle(
        &self,
        ip: &str,
        username: &str,
        now: UnixMillis,
    ) -> Result<(Slot, Reserved), LoginError> {
        self.limit_ip(ip, now).await?;
        let slot = self.hasher.slot().await?;
        let guess = self.reserve_password_guess(ip, username, now).await?;
        Ok((slot, guess))
    }

    /// Attempts per client IP per window, before any hashing.
    async fn limit_ip(&self, ip: &str, now: UnixMillis) -> Result<(), LoginError> {
        let (hits, reset) = self
            .store
            .hit(&format!("ip:{ip}"), self.limits.ip_window_secs)
            .await?;
        if hits > self.limits.per_ip {
            self.sessions
                .audit(
                    AuditEvent::new("rate_limited", &Actor::system(), now)
                        .ip(ip)
                        .reason("ip"),
                )
                .await;
            return Err(LoginError::RateLimited {
                retry_after_secs: reset.max(1),
            });
        }
        Ok(())
    }

    /// Reserves this password guess, or says how long this network must wait.
    async fn reserve_password_guess(
        &self,
        ip: &str,
        username: &str,
        now: UnixMillis,
    ) -> Result<Reserved, LoginError> {
        let network = network_of(ip);
        let reserved = self
            .store
            .reserve_password_guess(
                username,
                &network,
                now,
                &self.limits.network_schedule(),
                &self.limits.global_schedule(),
            )
            .await?;
        let wait_ms = reserved.wait_ms;
        if wait_ms > 0 {
            let mut event = AuditEvent::new("rate_limited", &Actor::system(), now)
                .ip(ip)
                .reason(&format!(
                    "username delayed after {} failures from this network ({} in all)",
                    reserved.failures, reserved.all_failures
                ));
            if let Some(user) = self.directory().by_username(username) {
                event = event.user(user.id.as_str());
            }
            self.sessions.audit(event).await;
            return Err(LoginError::RateLimited {
                retry_after_secs: (wait_ms as u64).div_ceil(1000).max(1),
            });
        }
        Ok(Reserved::password(self.store.clone(), username, &network))
    }

    async fn count_success(&self, user: &User) -> Result<(), LoginError> {
        let (hits, reset) = self
            .store
            .hit(&format!("ok:{}", user.id), self.limits.success_window_secs)
            .await?;
        if hits > self.limits.successes {
            return Err(LoginError::RateLimited {
                retry_after_secs: reset.max(1),
            });
        }
        Ok(())
    }

    /// Password step of a login.
    #[tracing::instrument(name = "Login", skip_all, fields(user.id))]
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: ClientInfo,
        now: UnixMillis,
    ) -> Result<LoginOutcome, LoginError> {
        let (slot, guess) = self.throttle(&client.ip, username, now).await?;
        let directory = self.directory();
        let user = directory.by_username(username);
        // Read before the password check: a password change racing this login wins. An unknown
        // username reads a key that never exists, so both answers cost the same round trips.
        let probe = user.map(|u| u.id.clone()).unwrap_or_else(no_such_user);
        let version = self.sessions.credential_version(&probe).await?;
        let version = user.map(|_| version);
        let ok = slot
            .verify(password, user.map(|u| u.password_hash.as_str()))
            .await?;
        let (Some(user), true) = (user, ok) else {
            guess.wrong();
            let mut event = AuditEvent::new("login_failed", &Actor::system(), now).ip(&client.ip);
            event = match user {
                Some(u) => event.user(u.id.as_str()).reason("wrong password"),
                None => event.reason("unknown username"),
            };
            // Not awaited: a known user's event also goes to their own list, and the answer's
            // timing must not tell a known username from an unknown one.
            self.sessions.audit_detached(event);
            return Err(LoginError::InvalidCredentials);
        };
        tracing::Span::current().record("user.id", tracing::field::display(&user.id));
        guess.right().await?;
        if user.disabled {
            tracing::warn!("login refused: account disabled");
            return Err(LoginError::Disabled);
        }
        if user.totp_secret.is_some() {
            let ticket = random_handle();
            let pending = MfaTicket {
                user_id: user.id.as_str().to_owned(),
                auth_time: now,
                credential_version: version.unwrap_or(0),
                ip: client.ip,
                user_agent: client.user_agent,
                device_name: client.device_name,
                native: client.native.is_some(),
            };
            self.store
                .put_ticket(&handle_hash(&ticket), &pending, MFA_TICKET_TTL_SECS)
                .await?;
            tracing::info!("password accepted; TOTP required");
            return Ok(LoginOutcome::MfaRequired { ticket });
        }
        self.count_success(user).await?;
        let refresh = client.native.map(|_| SessionSecret::generate());
        let new = NewSession {
            user_id: user.id.clone(),
            acr: Acr::Pwd,
            amr: vec!["pwd".into()],
            roles: user.roles.clone(),
            ip: client.ip,
            user_agent: client.user_agent,
            device_name: client.device_name,
            auth_time: Some(now),
            native: native_client(client.native, refresh.as_ref()),
            fingerprint: Some(user.fingerprint.clone()),
        };
        let actor = Actor::user(user.id.as_str());
        let (session, token) = self
            .sessions
            .create_checked(new, version, &actor, now)
            .await?;
        let refresh = refresh.map(|secret| RefreshToken::new(session.id.clone(), secret));
        Ok(LoginOutcome::Session(Box::new(LoggedIn {
            session,
            token,
            refresh,
        })))
    }

    /// Second step: the TOTP code for a pending ticket.
    #[tracing::instrument(name = "Login MFA", skip_all, fields(user.id))]
    pub async fn login_mfa(
        &self,
        ticket: &str,
        code: &str,
        native: Option<NativeLifetimes>,
        now: UnixMillis,
    ) -> Result<LoggedIn, LoginError> {
        let hash = handle_hash(ticket);
        let pending = self
            .store
            .get_ticket(&hash)
            .await?
            .ok_or(LoginError::MfaTicketInvalid)?;
        let directory = self.directory();
        let user = directory
            .by_id(&pending.user_id)
            .ok_or(LoginError::MfaTicketInvalid)?;
        tracing::Span::current().record("user.id", tracing::field::display(&user.id));
        if user.disabled {
            return Err(LoginError::Disabled);
        }
        // A ticket from before a credential change is dead before it may guess a code (the
        // change also clears the code-failure count, which old tickets must not refill).
        if self.sessions.credential_version(&user.id).await? != pending.credential_version {
            return Err(LoginError::MfaTicketInvalid);
        }
        if let Err(e) = self.check_totp(user, code, CodePath::Login, now).await {
            if matches!(e, LoginError::TotpInvalid | LoginError::TotpReplayed) {
                self.store
                    .ticket_failure(&hash, MFA_TICKET_MAX_FAILURES)
                    .await?;
            }
            return Err(e);
        }
        if !self.store.consume_ticket(&hash).await? {
            return Err(LoginError::MfaTicketInvalid);
        }
        self.count_success(user).await?;
        // The kind of client is fixed by the first step; the second cannot change it.
        let native = native.filter(|_| pending.native);
        let refresh = native.map(|_| SessionSecret::generate());
        let new = NewSession {
            user_id: user.id.clone(),
            acr: Acr::Mfa,
            amr: vec!["pwd".into(), "otp".into()],
            roles: user.roles.clone(),
            ip: pending.ip,
            user_agent: pending.user_agent,
            device_name: pending.device_name,
            auth_time: Some(now),
            native: native_client(native, refresh.as_ref()),
            fingerprint: Some(user.fingerprint.clone()),
        };
        let actor = Actor::user(user.id.as_str());
        let (session, token) = self
            .sessions
            .create_checked(new, Some(pending.credential_version), &actor, now)
            .await?;
        let refresh = refresh.map(|secret| RefreshToken::new(session.id.clone(), secret));
        Ok(LoggedIn {
            session,
            token,
            refresh,
        })
    }

    /// Verifies a TOTP code and spends its time step (a replay fails). Each code is reserved
    /// first, per user and path (login, step-up), across tickets and networks, so guessing is
    /// delayed and simultaneous guesses cannot slip past the delay; a correct password never
    /// clears the count (that is exactly what the attacker of a second factor has).
    async fn check_totp(
        &self,
        user: &User,
        code: &str,
        path: CodePath,
        now: UnixMillis,
    ) -> Result<(), LoginError> {
        let secret = user.totp_secret.as_deref().ok_or(LoginError::TotpInvalid)?;
        let reserved = self
            .store
            .reserve_code_guess(&user.id, path, now, &self.limits.totp_schedule())
            .await?;
        if reserved.wait_ms > 0 {
            self.sessions
                .audit(
                    AuditEvent::new("rate_limited", &Actor::system(), now)
                        .user(user.id.as_str())
                        .reason(&format!(
                            "second factor delayed after {} wrong codes",
                            reserved.failures
                        )),
                )
                .await;
            return Err(LoginError::RateLimited {
                retry_after_secs: (reserved.wait_ms as u64).div_ceil(1000).max(1),
            });
        }
        let guess = Reserved::code(self.store.clone(), &user.id, path);
        let failed = |reason: &'static str| {
            AuditEvent::new("login_failed", &Actor::system(), now)
                .user(user.id.as_str())
                .reason(reason)
        };
        let Some(step) = totp::verify(secret, code, (now / 1000).max(0) as u64) else {
            guess.wrong();
            self.sessions.audit(failed("wrong TOTP code")).await;
            return Err(LoginError::TotpInvalid);
        };
        if !self.store.use_totp_step(&user.id, step).await? {
            guess.wrong();
            self.sessions.audit(failed("replayed TOTP code")).await;
            return Err(LoginError::TotpReplayed);
        }
        guess.right().await?;
        Ok(())
    }

    /// Re-verifies the session's user; returns the level reached. A password alone never
    /// reaches `mfa` for a user with TOTP enrolled; a user without TOTP tops out at `pwd`.
    #[tracing::instrument(name = "Step up", skip_all, fields(session.id = %session.id))]
    pub async fn step_up(
        &self,
        session: &Session,
        password: Option<&str>,
        code: Option<&str>,
        client_ip: &str,
        now: UnixMillis,
    ) -> Result<Acr, LoginError> {
        let directory = self.directory();
        let user = directory
            .by_id(session.record.user_id.as_str())
            .ok_or(LoginError::NotStepUpCapable)?;
        if user.disabled {
            return Err(LoginError::Disabled);
        }
        match password {
            Some(password) => {
                let (slot, guess) = self.throttle(client_ip, &user.username, now).await?;
                if !slot.verify(password, Some(&user.password_hash)).await? {
                    guess.wrong();
                    self.sessions
                        .audit(
                            AuditEvent::new("login_failed", &Actor::user(user.id.as_str()), now)
                                .user(user.id.as_str())
                                .session(session.id.as_str())
                                .ip(client_ip)
                                .reason("step-up: wrong password"),
                        )
                        .await;
                    return Err(LoginError::InvalidCredentials);
                }
                guess.right().await?;
            }
            None => self.limit_ip(client_ip, now).await?,
        }
        let level = match code {
            Some(code) => {
                self.check_totp(user, code, CodePath::StepUp, now).await?;
                Acr::Mfa
            }
            None => Acr::Pwd,
        };
        Ok(level)
    }
}

fn native_client(
    lifetimes: Option<NativeLifetimes>,
    refresh: Option<&SessionSecret>,
) -> Option<NativeClient> {
    match (lifetimes, refresh) {
        (Some(l), Some(secret)) => Some(NativeClient {
            refresh_hash: secret.hash(),
            idle_timeout_ms: l.idle_timeout_ms,
            absolute_timeout_ms: l.absolute_timeout_ms,
        }),
        _ => None,
    }
}

/// The id whose version is read in place of an unknown username's: reserved (the users file
/// refuses ids under `tessera.`), so its key never exists.
fn no_such_user() -> UserId {
    UserId::parse("tessera.no-such-user").expect("a valid user id")
}

fn random_handle() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Only the hash of a ticket handle is stored, like every other credential.
fn handle_hash(handle: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(handle.as_bytes()))
}
