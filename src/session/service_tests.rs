//! The session service on the in-memory store with a frozen test clock: deadlines are passed
//! by moving the clock, never by sleeping. (The same store contract runs against Redis in
//! `tests/api/contract.rs`.)

use super::ports::{AccessToken, MintError, SuccessorMac, TokenIssuer};
use super::service::RefreshError;
use super::*;
use crate::audit::{Actor, LogOnly};
use crate::clock::{Clock, TestClock};
use crate::session::model::{NativeClient, NewSession};
use crate::session::policy::{LimitPolicy, OnLimit};
use crate::store::memory::MemoryStore;
use std::sync::Arc;
use std::time::Duration;

const T0: i64 = 1_900_000_000_000;

struct NoTokens;

impl TokenIssuer for NoTokens {
    fn mint(&self, _: &Session, _: Option<&str>, _: UnixMillis) -> Result<AccessToken, MintError> {
        Err(anyhow::anyhow!("not in these tests").into())
    }
}

/// A stand-in successor MAC: HMAC is not what is under test here, the chain logic is.
struct Sha;

impl SuccessorMac for Sha {
    fn mac(&self, data: &[u8]) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::digest(data).into()
    }
}

fn service(clock: &TestClock) -> SessionService {
    let policy = SessionPolicy {
        idle_timeout_ms: 600_000,
        absolute_timeout_ms: 3_600_000,
        renew_divisor: 5,
        recheck_ms: 900_000,
    };
    service_on(Arc::new(MemoryStore::new(clock.shared())), policy, clock)
}

fn service_on(store: Arc<MemoryStore>, policy: SessionPolicy, clock: &TestClock) -> SessionService {
    SessionService::new(
        store,
        Arc::new(NoTokens),
        policy,
        LimitPolicy {
            max_sessions: 5,
            on_limit: OnLimit::Evict,
        },
        Region::parse("eu").unwrap(),
        vec![Region::parse("eu").unwrap()],
        Arc::new(LogOnly),
    )
    .with_clock(clock.shared())
    .with_successor_mac(Arc::new(Sha))
}

fn new_session(native: Option<&SessionSecret>) -> NewSession {
    NewSession {
        user_id: UserId::parse("alice").unwrap(),
        acr: Acr::Pwd,
        amr: vec!["pwd".into()],
        roles: vec![],
        ip: "203.0.113.7".into(),
        user_agent: "test".into(),
        device_name: String::new(),
        auth_time: None,
        native: native.map(|s| NativeClient {
            refresh_hash: s.hash(),
            idle_timeout_ms: 600_000,
            absolute_timeout_ms: 3_600_000,
        }),
        fingerprint: None,
    }
}

#[tokio::test]
async fn a_session_dies_at_its_idle_deadline_and_lives_while_used() {
    let clock = TestClock::at(T0);
    let svc = service(&clock);
    let (_, token) = svc
        .create(new_session(None), &Actor::system(), clock.now_ms())
        .await
        .unwrap();
    // Used every 5 minutes, it outlives the 10-minute idle window (renewed past a fifth).
    for _ in 0..4 {
        clock.advance(Duration::from_secs(300));
        let s = svc.authenticate(&token, clock.now_ms()).await.unwrap();
        assert_eq!(s.record.last_seen_at, clock.now_ms(), "renewed");
    }
    clock.advance(Duration::from_secs(601));
    assert!(matches!(
        svc.authenticate(&token, clock.now_ms()).await,
        Err(AuthError::NoSession)
    ));
}

#[tokio::test]
async fn within_a_fifth_of_the_window_a_read_stays_a_read() {
    let clock = TestClock::at(T0);
    let svc = service(&clock);
    let (_, token) = svc
        .create(new_session(None), &Actor::system(), clock.now_ms())
        .await
        .unwrap();
    clock.advance(Duration::from_secs(60));
    let s = svc.authenticate(&token, clock.now_ms()).await.unwrap();
    assert_eq!(
        s.record.last_seen_at, T0,
        "no renewal write before a fifth (120 s)"
    );
}

#[tokio::test]
async fn the_absolute_deadline_holds_however_active() {
    let clock = TestClock::at(T0);
    let svc = service(&clock);
    let (_, token) = svc
        .create(new_session(None), &Actor::system(), clock.now_ms())
        .await
        .unwrap();
    for _ in 0..12 {
        clock.advance(Duration::from_secs(299));
        svc.authenticate(&token, clock.now_ms()).await.unwrap();
    }
    clock.advance(Duration::from_secs(13));
    assert!(svc.authenticate(&token, clock.now_ms()).await.is_err());
}

#[tokio::test]
async fn rotation_kills_the_old_secret_at_once() {
    let clock = TestClock::at(T0);
    let svc = service(&clock);
    let (mut session, old) = svc
        .create(new_session(None), &Actor::system(), clock.now_ms())
        .await
        .unwrap();
    let new = svc
        .rotate(
            &mut session,
            Some(Acr::Mfa),
            &Actor::system(),
            clock.now_ms(),
        )
        .await
        .unwrap();
    assert!(svc.authenticate(&old, clock.now_ms()).await.is_err());
    let s = svc.authenticate(&new, clock.now_ms()).await.unwrap();
    assert_eq!(s.record.elevated_acr, Some(Acr::Mfa));
}

#[tokio::test]
async fn a_grant_is_spent_once() {
    let clock = TestClock::at(T0);
    let svc = service(&clock);
    let (session, _) = svc
        .create(new_session(None), &Actor::system(), clock.now_ms())
        .await
        .unwrap();
    svc.grant(&session, "pay", Acr::Mfa, 60_000).await.unwrap();
    assert_eq!(
        svc.take_grant(&session, "pay").await.unwrap(),
        Some(Acr::Mfa)
    );
    assert_eq!(svc.take_grant(&session, "pay").await.unwrap(), None);
}

#[tokio::test]
async fn refresh_grace_is_a_window_and_an_older_generation_is_reuse() {
    let clock = TestClock::at(T0);
    let svc = service(&clock);
    let first = SessionSecret::generate();
    let (session, _) = svc
        .create(new_session(Some(&first)), &Actor::system(), clock.now_ms())
        .await
        .unwrap();
    let r0 = RefreshToken::new(session.id.clone(), first);
    let (_, r1) = svc.refresh(&r0, 10_000, clock.now_ms()).await.unwrap();
    clock.advance(Duration::from_secs(5));
    let (_, again) = svc.refresh(&r0, 10_000, clock.now_ms()).await.unwrap();
    assert_eq!(
        again.expose(),
        r1.expose(),
        "inside the window: the same successor"
    );
    let (_, r2) = svc.refresh(&r1, 10_000, clock.now_ms()).await.unwrap();
    let (_, _r3) = svc.refresh(&r2, 10_000, clock.now_ms()).await.unwrap();
    // A made-up secret for this (public) session id is invalid and ends nothing.
    let forged = RefreshToken::new(session.id.clone(), SessionSecret::generate());
    assert!(matches!(
        svc.refresh(&forged, 10_000, clock.now_ms()).await,
        Err(RefreshError::Invalid)
    ));
    // r0, three generations back, is proven genuine by the chain: reuse.
    assert!(matches!(
        svc.refresh(&r0, 10_000, clock.now_ms()).await,
        Err(RefreshError::Reused)
    ));
    assert!(svc
        .load(&session.id, clock.now_ms())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn revoke_all_ends_every_session_of_the_user() {
    let clock = TestClock::at(T0);
    let svc = service(&clock);
    let (_, a) = svc
        .create(new_session(None), &Actor::system(), clock.now_ms())
        .await
        .unwrap();
    let (_, b) = svc
        .create(new_session(None), &Actor::system(), clock.now_ms())
        .await
        .unwrap();
    let user = UserId::parse("alice").unwrap();
    assert_eq!(
        svc.revoke_all(&user, &Actor::system(), "test")
            .await
            .unwrap(),
        2
    );
    for token in [&a, &b] {
        assert!(svc.authenticate(token, clock.now_ms()).await.is_err());
    }
}

#[tokio::test]
async fn a_last_seen_written_by_a_fast_clock_delays_the_redis_check_by_at_most_the_margin() {
    let clock = TestClock::at(T0);
    let store = Arc::new(MemoryStore::new(clock.shared()));
    let policy = SessionPolicy {
        idle_timeout_ms: 3_600_000,
        absolute_timeout_ms: 86_400_000,
        renew_divisor: 5,
        // Half of a pushed revocation's life (905 s), as `Settings::session_policy` sets it.
        recheck_ms: 452_500,
    };
    let svc = service_on(store.clone(), policy, &clock);
    // The session is created by a node whose clock runs 5 minutes fast.
    let fast = T0 + 300_000;
    let (_, token) = svc
        .create(new_session(None), &Actor::system(), fast)
        .await
        .unwrap();
    // Its user's version moves without the index finding it (nothing pushed reaches this node).
    let user = UserId::parse("alice").unwrap();
    store.lose_index(&user);
    assert_eq!(
        store.revoke_all(&user).await.unwrap(),
        0,
        "the index listed nothing"
    );
    // 905 s later by a correct clock the pushed revocation would have lapsed; the Redis-side
    // check has already been due for a while.
    clock.set(T0 + 905_000);
    assert!(matches!(
        svc.authenticate(&token, clock.now_ms()).await,
        Err(AuthError::NoSession)
    ));
}
