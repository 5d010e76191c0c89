//! The session-store contract: every behaviour the session service relies on, run against the
//! Redis store (real `redis-server`) and against the in-memory fake, so the fake that the
//! service's unit tests use cannot drift from the real thing.

use crate::helpers::*;
use std::sync::Arc;
use tessera::clock::{Clock, TestClock};
use tessera::session::model::RefreshState;
use tessera::session::policy::{LimitPolicy, OnLimit};
use tessera::session::ports::{
    CreateError, CreateRequest, RefreshOutcome, RefreshRequest, RefreshRevocation,
};
use tessera::session::{
    Acr, Region, SecretHash, SessionId, SessionRecord, SessionSecret, SessionStore, UserId,
};
use tessera::store::memory::MemoryStore;
use tessera::store::{KeyLayout, RedisConnections, RedisSessionStore};

const HOUR: i64 = 3_600_000;
const EVICT: LimitPolicy = LimitPolicy {
    max_sessions: 2,
    on_limit: OnLimit::Evict,
};
const REJECT: LimitPolicy = LimitPolicy {
    max_sessions: 2,
    on_limit: OnLimit::Reject,
};

/// One store under test, with the clock it reads.
struct Subject {
    store: Arc<dyn SessionStore>,
    clock: TestClock,
    _redis: Option<RedisServer>,
}

impl Subject {
    async fn redis() -> Self {
        let redis = RedisServer::shared();
        let settings = test_settings(&redis);
        let conns = RedisConnections::connect(&settings.home_redis())
            .await
            .unwrap();
        let clock = TestClock::new();
        let store = RedisSessionStore::new(
            conns.per_thread(),
            KeyLayout::new(settings.key_prefix.clone()),
            vec![Region::parse("eu").unwrap()],
            clock.shared(),
        );
        Self {
            store: Arc::new(store),
            clock,
            _redis: Some(redis),
        }
    }

    fn memory() -> Self {
        let clock = TestClock::new();
        Self {
            store: Arc::new(MemoryStore::new(clock.shared())),
            clock,
            _redis: None,
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    async fn create(
        &self,
        user: &UserId,
        record: &SessionRecord,
        limit: LimitPolicy,
        expected_version: Option<u64>,
        fingerprint: Option<&str>,
    ) -> (
        SessionId,
        Result<tessera::session::ports::Created, CreateError>,
    ) {
        let id = SessionId::generate(&Region::parse("eu").unwrap(), user);
        let created = self
            .store
            .create(CreateRequest {
                id: &id,
                user,
                record,
                ttl_ms: HOUR,
                limit,
                expected_version,
                fingerprint,
                now: self.now(),
            })
            .await;
        (id, created)
    }
}

pub fn record(user: &UserId, last_seen: i64, secret: &SecretHash) -> SessionRecord {
    SessionRecord {
        user_id: user.clone(),
        credential_version: 0,
        created_at: last_seen,
        last_seen_at: last_seen,
        idle_expires_at: last_seen + HOUR,
        expires_at: last_seen + 2 * HOUR,
        auth_time: last_seen,
        acr: Acr::Pwd,
        amr: vec!["pwd".into()],
        elevated_at: 0,
        elevated_acr: None,
        anomaly_at: 0,
        secret_hash: secret.clone(),
        ip: "198.51.100.1".into(),
        ua: "ü-agent/1.0 (X11)".into(),
        device_name: String::new(),
        idle_timeout_ms: 0,
        refresh: None,
        roles: vec!["member".into()],
        from_users_file: false,
    }
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

/// Runs one contract check against both stores.
macro_rules! contract {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn on_redis() {
                super::$name(super::Subject::redis().await).await;
            }
            #[tokio::test]
            async fn on_the_in_memory_fake() {
                super::$name(super::Subject::memory()).await;
            }
        }
    };
}

contract!(round_trip_renew_revoke_and_no_resurrection);
async fn round_trip_renew_revoke_and_no_resurrection(s: Subject) {
    let alice = user("alice");
    let secret = SessionSecret::generate().hash();
    let mut rec = record(&alice, s.now(), &secret);
    let (id, created) = s.create(&alice, &rec, EVICT, None, None).await;
    rec.credential_version = created.unwrap().credential_version;
    assert!(
        rec.credential_version > 0,
        "a first session starts the version at now"
    );
    assert_eq!(s.store.load(&id).await.unwrap().unwrap(), rec);

    let later = s.now() + 1_000;
    assert!(s
        .store
        .renew(&id, &alice, &secret, later, later + HOUR, HOUR)
        .await
        .unwrap());
    let renewed = s.store.load(&id).await.unwrap().unwrap();
    assert_eq!(renewed.last_seen_at, later);
    let stranger = SessionSecret::generate().hash();
    assert!(!s
        .store
        .renew(&id, &alice, &stranger, later, later + HOUR, HOUR)
        .await
        .unwrap());

    assert!(s.store.revoke(&id, &alice).await.unwrap());
    assert!(!s.store.revoke(&id, &alice).await.unwrap());
    assert!(!s
        .store
        .renew(&id, &alice, &secret, later, later + HOUR, HOUR)
        .await
        .unwrap());
    assert!(s.store.load(&id).await.unwrap().is_none());
}

contract!(the_limit_evicts_the_least_recently_used_or_rejects);
async fn the_limit_evicts_the_least_recently_used_or_rejects(s: Subject) {
    let carol = user("carol");
    let h = SessionSecret::generate().hash();
    let now = s.now();
    let (old, _) = s
        .create(&carol, &record(&carol, now - 2_000, &h), EVICT, None, None)
        .await;
    let (_, mid) = s
        .create(&carol, &record(&carol, now - 1_000, &h), EVICT, None, None)
        .await;
    mid.unwrap();
    let (_, third) = s
        .create(&carol, &record(&carol, now, &h), EVICT, None, None)
        .await;
    assert_eq!(third.unwrap().evicted, vec![old.to_string()]);
    assert!(s.store.load(&old).await.unwrap().is_none());
    let (extra, refused) = s
        .create(&carol, &record(&carol, now, &h), REJECT, None, None)
        .await;
    assert!(matches!(refused, Err(CreateError::LimitReached)));
    assert!(s.store.load(&extra).await.unwrap().is_none());
    assert_eq!(s.store.list(&carol, now).await.unwrap().sessions.len(), 2);
}

contract!(creation_refuses_a_moved_version_or_a_changed_fingerprint);
async fn creation_refuses_a_moved_version_or_a_changed_fingerprint(s: Subject) {
    let dave = user("dave");
    let h = SessionSecret::generate().hash();
    let now = s.now();
    let (first, created) = s
        .create(&dave, &record(&dave, now, &h), EVICT, Some(0), Some("fp-1"))
        .await;
    let version = created.unwrap().credential_version;
    let (_, stale) = s
        .create(
            &dave,
            &record(&dave, now, &h),
            EVICT,
            Some(version - 1),
            Some("fp-1"),
        )
        .await;
    assert!(matches!(stale, Err(CreateError::CredentialVersionChanged)));
    let (_, other_entry) = s
        .create(
            &dave,
            &record(&dave, now, &h),
            EVICT,
            Some(version),
            Some("fp-2"),
        )
        .await;
    assert!(matches!(
        other_entry,
        Err(CreateError::CredentialVersionChanged)
    ));
    let (_, same) = s
        .create(
            &dave,
            &record(&dave, now, &h),
            EVICT,
            Some(version),
            Some("fp-1"),
        )
        .await;
    assert!(same.is_ok());
    assert!(s.store.load(&first).await.unwrap().is_some());
}

contract!(revoke_all_ends_everything_and_versions_only_grow);
async fn revoke_all_ends_everything_and_versions_only_grow(s: Subject) {
    let erin = user("erin");
    let h = SessionSecret::generate().hash();
    let now = s.now();
    let (a, created) = s
        .create(&erin, &record(&erin, now, &h), EVICT, None, None)
        .await;
    let before = created.unwrap().credential_version;
    let (b, _) = s
        .create(&erin, &record(&erin, now, &h), EVICT, None, None)
        .await;
    assert_eq!(s.store.revoke_all(&erin).await.unwrap(), 2);
    let after = s.store.credential_version(&erin).await.unwrap();
    assert!(after > before, "{after} > {before}");
    for id in [&a, &b] {
        assert!(s.store.load(id).await.unwrap().is_none());
    }
    let (c, created) = s
        .create(&erin, &record(&erin, now, &h), EVICT, None, None)
        .await;
    assert_eq!(created.unwrap().credential_version, after);
    assert!(s.store.load(&c).await.unwrap().is_some());
    assert_eq!(s.store.erase_user(&erin).await.unwrap(), 1);
    assert!(s.store.load(&c).await.unwrap().is_none());
}

contract!(rotation_is_compare_and_set_and_records_a_step_up);
async fn rotation_is_compare_and_set_and_records_a_step_up(s: Subject) {
    let frank = user("frank");
    let old = SessionSecret::generate().hash();
    let new = SessionSecret::generate().hash();
    let (id, _) = s
        .create(&frank, &record(&frank, s.now(), &old), EVICT, None, None)
        .await;
    let at = s.now();
    assert!(s
        .store
        .rotate(&id, &old, &new, Some((at, Acr::Mfa)))
        .await
        .unwrap());
    assert!(
        !s.store.rotate(&id, &old, &new, None).await.unwrap(),
        "old hash is spent"
    );
    let rec = s.store.load(&id).await.unwrap().unwrap();
    assert!(rec.secret_hash.matches(&new));
    assert_eq!((rec.elevated_at, rec.elevated_acr), (at, Some(Acr::Mfa)));
    assert!(s.store.mark_anomaly(&id, at).await.unwrap());
    assert!(
        !s.store.mark_anomaly(&id, at + 1).await.unwrap(),
        "first sighting only"
    );
}

contract!(grants_are_single_use);
async fn grants_are_single_use(s: Subject) {
    let gina = user("gina");
    let h = SessionSecret::generate().hash();
    let (id, _) = s
        .create(&gina, &record(&gina, s.now(), &h), EVICT, None, None)
        .await;
    s.store
        .put_grant(&id, "op", Acr::Mfa, 60_000)
        .await
        .unwrap();
    assert_eq!(s.store.take_grant(&id, "op").await.unwrap(), Some(Acr::Mfa));
    assert_eq!(s.store.take_grant(&id, "op").await.unwrap(), None);
    assert_eq!(s.store.take_grant(&id, "other").await.unwrap(), None);
}

contract!(refresh_rotates_allows_grace_catches_reuse_and_ignores_strangers);
async fn refresh_rotates_allows_grace_catches_reuse_and_ignores_strangers(s: Subject) {
    let hal = user("hal");
    let (r0, r1, r2) = (
        SessionSecret::generate().hash(),
        SessionSecret::generate().hash(),
        SessionSecret::generate().hash(),
    );
    let mut rec = record(&hal, s.now(), &SessionSecret::generate().hash());
    rec.refresh = Some(RefreshState {
        current: r0.clone(),
        previous: None,
        rotated_at: 0,
    });
    let (id, _) = s.create(&hal, &rec, EVICT, None, None).await;
    let now = s.now();
    let refresh = |p: &SecretHash, n: &SecretHash, at: i64| {
        let (p, n) = (p.clone(), n.clone());
        let store = s.store.clone();
        let id = id.clone();
        async move {
            store
                .refresh(RefreshRequest {
                    id: &id,
                    presented_hash: &p,
                    successor_hash: &n,
                    now: at,
                    grace_ms: 10_000,
                    default_idle_ms: HOUR,
                })
                .await
                .unwrap()
        }
    };
    assert!(matches!(
        refresh(&r0, &r1, now).await,
        RefreshOutcome::Rotated(_)
    ));
    assert!(matches!(
        refresh(&r0, &r1, now + 1).await,
        RefreshOutcome::Grace(_)
    ));
    let stranger = SessionSecret::generate().hash();
    assert!(matches!(
        refresh(&stranger, &r2, now + 2).await,
        RefreshOutcome::Mismatch { .. }
    ));
    assert!(
        s.store.load(&id).await.unwrap().is_some(),
        "a stranger changes nothing"
    );
    assert!(matches!(
        s.store.revoke_by_refresh(&id, &stranger).await.unwrap(),
        RefreshRevocation::Mismatch { .. }
    ));
    assert!(matches!(
        refresh(&r1, &r2, now + 3).await,
        RefreshOutcome::Rotated(_)
    ));
    // r1 is now the spent predecessor; outside the grace window it is reuse.
    assert!(matches!(
        refresh(&r1, &r2, now + 20_000).await,
        RefreshOutcome::Reused(_)
    ));
    assert!(
        s.store.load(&id).await.unwrap().is_none(),
        "reuse ends the session"
    );
}

contract!(a_session_stamped_below_the_users_version_is_dead_however_it_is_reached);
async fn a_session_stamped_below_the_users_version_is_dead_however_it_is_reached(s: Subject) {
    let ivy = user("ivy");
    let h = SessionSecret::generate().hash();
    let now = s.now();
    let (id, _) = s
        .create(&ivy, &record(&ivy, now, &h), EVICT, None, None)
        .await;
    // A revoke-all that the index did not lead to this session (simulated: bump only via a
    // second user-wide revocation after re-creating nothing): the stamp check alone kills it.
    s.store.revoke_all(&ivy).await.unwrap();
    assert!(s.store.load(&id).await.unwrap().is_none());
    assert!(s.store.list(&ivy, now).await.unwrap().sessions.is_empty());
    assert!(matches!(
        s.store.revoke_by_refresh(&id, &h).await.unwrap(),
        RefreshRevocation::Unknown
    ));
}
