//! Contract of the Redis session store, exercised directly (below the HTTP layer).

use crate::helpers::*;
use redis::Commands;
use std::sync::Arc;
use tessera::session::policy::{LimitPolicy, OnLimit};
use tessera::session::ports::{CreateError, CreateRequest};
use tessera::session::{Acr, Region, SessionId, SessionRecord, SessionStore, UserId};
use tessera::store::{KeyLayout, RedisConnections, RedisSessionStore};

const NOW: i64 = 1_900_000_000_000;

async fn store(redis: &RedisServer) -> (RedisSessionStore, KeyLayout) {
    let settings = test_settings(redis);
    let conns = RedisConnections::connect(&settings.home_redis())
        .await
        .unwrap();
    let layout = KeyLayout::new(settings.key_prefix.clone());
    let regions = vec![Region::parse("eu").unwrap()];
    (
        RedisSessionStore::new(
            conns.per_thread(),
            layout.clone(),
            regions,
            tessera::clock::system(),
        ),
        layout,
    )
}

fn record(user: &str, last_seen: i64) -> SessionRecord {
    SessionRecord {
        user_id: UserId::parse(user).unwrap(),
        credential_version: 0,
        created_at: last_seen,
        last_seen_at: last_seen,
        idle_expires_at: last_seen + 3_600_000,
        expires_at: last_seen + 7_200_000,
        auth_time: last_seen,
        acr: Acr::Pwd,
        amr: vec!["pwd".into()],
        elevated_at: 0,
        elevated_acr: None,
        anomaly_at: 0,
        secret_hash: tessera::session::SessionSecret::generate().hash(),
        ip: "198.51.100.1".into(),
        ua: r"ü-agent/1.0 (X11; path\/with\backslash)".into(),
        device_name: String::new(),
        roles: Vec::new(),
        idle_timeout_ms: 0,
        refresh: None,
        from_users_file: false,
    }
}

fn id(user: &UserId) -> SessionId {
    SessionId::generate(&Region::parse("eu").unwrap(), user)
}

/// Positional shorthand for `SessionStore::create` in these tests.
trait CreateWith {
    #[allow(clippy::too_many_arguments)]
    async fn create_with(
        &self,
        id: &SessionId,
        user: &UserId,
        record: &SessionRecord,
        ttl_ms: i64,
        limit: LimitPolicy,
        expected_version: Option<u64>,
        now: i64,
    ) -> Result<tessera::session::ports::Created, CreateError>;
}

impl CreateWith for RedisSessionStore {
    async fn create_with(
        &self,
        id: &SessionId,
        user: &UserId,
        record: &SessionRecord,
        ttl_ms: i64,
        limit: LimitPolicy,
        expected_version: Option<u64>,
        now: i64,
    ) -> Result<tessera::session::ports::Created, CreateError> {
        self.create(CreateRequest {
            id,
            user,
            record,
            ttl_ms,
            limit,
            expected_version,
            fingerprint: None,
            now,
        })
        .await
    }
}

const EVICT: LimitPolicy = LimitPolicy {
    max_sessions: 2,
    on_limit: OnLimit::Evict,
};
const REJECT: LimitPolicy = LimitPolicy {
    max_sessions: 2,
    on_limit: OnLimit::Reject,
};

#[tokio::test]
async fn create_load_renew_revoke_round_trip_without_resurrection() {
    let redis = RedisServer::shared();
    let (store, layout) = store(&redis).await;
    let user = UserId::parse("alice").unwrap();
    let sid = id(&user);
    let mut rec = record("alice", NOW);
    let created = store
        .create_with(&sid, &user, &rec, 3_600_000, EVICT, None, NOW)
        .await
        .unwrap();
    rec.credential_version = created.credential_version;
    let loaded = store.load(&sid).await.unwrap().unwrap();
    assert_eq!(
        loaded, rec,
        "the Lua round trip keeps every field (and UTF-8)"
    );

    assert!(store
        .renew(
            &sid,
            &user,
            &rec.secret_hash,
            NOW + 1,
            NOW + 100_000,
            100_000
        )
        .await
        .unwrap());
    let renewed = store.load(&sid).await.unwrap().unwrap();
    assert_eq!(renewed.idle_expires_at, NOW + 100_000);
    assert_eq!(renewed.last_seen_at, NOW + 1);
    assert_eq!(
        renewed.ua, rec.ua,
        "the Lua re-encoding keeps slashes and backslashes exact"
    );
    let stored: String = redis::Commands::get(&mut redis.conn(), layout.session(&sid)).unwrap();
    assert!(
        !stored.contains(r"\/1.0"),
        "no escaped slash left: {stored}"
    );
    assert!(!store
        .renew(
            &sid,
            &user,
            &tessera::session::SessionSecret::generate().hash(),
            NOW + 2,
            NOW + 200_000,
            200_000
        )
        .await
        .unwrap());

    assert!(store.revoke(&sid, &user).await.unwrap());
    assert!(!store.revoke(&sid, &user).await.unwrap());
    assert!(!store
        .renew(
            &sid,
            &user,
            &rec.secret_hash,
            NOW + 3,
            NOW + 300_000,
            300_000
        )
        .await
        .unwrap());
    assert!(
        store.load(&sid).await.unwrap().is_none(),
        "renew after revoke resurrects nothing"
    );
    let mut conn = redis.conn();
    assert!(!conn.exists::<_, bool>(layout.session(&sid)).unwrap());
}

#[tokio::test]
async fn the_user_index_expires_with_the_latest_session_and_prunes_dead_entries() {
    let redis = RedisServer::shared();
    let (store, layout) = store(&redis).await;
    let user = UserId::parse("bob").unwrap();
    let (a, b) = (id(&user), id(&user));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    store
        .create_with(&a, &user, &record("bob", now), 60_000, EVICT, None, now)
        .await
        .unwrap();
    store
        .create_with(&b, &user, &record("bob", now), 120_000, EVICT, None, now)
        .await
        .unwrap();
    let mut conn = redis.conn();
    let ttl: i64 = conn.pttl(layout.user_index(&user)).unwrap();
    assert!(
        (100_000..=120_000).contains(&ttl),
        "index TTL follows the latest session: {ttl}"
    );

    // A record that vanished behind the index's back is pruned on the next listing.
    let _: () = conn.del(layout.session(&a)).unwrap();
    let listed = store.list(&user, now).await.unwrap();
    assert_eq!(listed.sessions.len(), 1);
    assert_eq!(listed.sessions[0].id, b);
    let members: Vec<String> = conn.zrange(layout.user_index(&user), 0, -1).unwrap();
    assert_eq!(members, vec![b.to_string()]);

    // Entries past their deadline are pruned too.
    let later = store.list(&user, now + 121_000).await.unwrap();
    assert!(later.sessions.is_empty());
}

#[tokio::test]
async fn the_limit_evicts_the_least_recently_used_or_rejects() {
    let redis = RedisServer::shared();
    let (store, _) = store(&redis).await;
    let user = UserId::parse("carol").unwrap();
    let (old, mid, new) = (id(&user), id(&user), id(&user));
    store
        .create_with(
            &old,
            &user,
            &record("carol", NOW - 2_000),
            3_600_000,
            EVICT,
            None,
            NOW,
        )
        .await
        .unwrap();
    store
        .create_with(
            &mid,
            &user,
            &record("carol", NOW - 1_000),
            3_600_000,
            EVICT,
            None,
            NOW,
        )
        .await
        .unwrap();
    let created = store
        .create_with(
            &new,
            &user,
            &record("carol", NOW),
            3_600_000,
            EVICT,
            None,
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(created.evicted, vec![old.to_string()]);
    assert!(store.load(&old).await.unwrap().is_none());

    let extra = id(&user);
    let refused = store
        .create_with(
            &extra,
            &user,
            &record("carol", NOW),
            3_600_000,
            REJECT,
            None,
            NOW,
        )
        .await;
    assert!(matches!(refused, Err(CreateError::LimitReached)));
    assert!(store.load(&extra).await.unwrap().is_none());
}

#[tokio::test]
async fn creation_refuses_when_the_credential_version_moved() {
    let redis = RedisServer::shared();
    let (store, layout) = store(&redis).await;
    let user = UserId::parse("dave").unwrap();
    let mut conn = redis.conn();
    let _: () = conn.set(layout.credential_version(&user), 7).unwrap();
    let sid = id(&user);
    let stale = store
        .create_with(
            &sid,
            &user,
            &record("dave", NOW),
            60_000,
            EVICT,
            Some(6),
            NOW,
        )
        .await;
    assert!(matches!(stale, Err(CreateError::CredentialVersionChanged)));
    assert!(store.load(&sid).await.unwrap().is_none());
    let ok = store
        .create_with(
            &sid,
            &user,
            &record("dave", NOW),
            60_000,
            EVICT,
            Some(7),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(ok.credential_version, 7);
    assert_eq!(
        store.load(&sid).await.unwrap().unwrap().credential_version,
        7
    );
}

#[tokio::test]
async fn two_hundred_concurrent_creations_respect_the_limit_under_both_policies() {
    let redis = RedisServer::shared();
    let (store, _) = store(&redis).await;
    let store = Arc::new(store);
    for (policy, user) in [(EVICT, "erin"), (REJECT, "frank")] {
        let user = UserId::parse(user).unwrap();
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let (store, user) = (store.clone(), user.clone());
            tasks.push(tokio::spawn(async move {
                let sid = id(&user);
                store
                    .create_with(
                        &sid,
                        &user,
                        &record(user.as_str(), NOW),
                        3_600_000,
                        policy,
                        None,
                        NOW,
                    )
                    .await
                    .is_ok()
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += t.await.unwrap() as usize;
        }
        let live = store.list(&user, NOW).await.unwrap();
        assert_eq!(live.sessions.len(), 2, "{policy:?}");
        match policy.on_limit {
            OnLimit::Evict => assert_eq!(ok, 200),
            OnLimit::Reject => assert_eq!(ok, 2),
        }
    }
}
