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
    let stored: Vec<u8> = redis::Commands::get(&mut redis.conn(), layout.session(&sid)).unwrap();
    assert!(
        matches!(stored[0], 0x80..=0x8f | 0xde),
        "stored as a MessagePack map: {stored:?}"
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

/// A record written as JSON (every record before the MessagePack format) goes through every
/// script that rewrites records, stays JSON, and keeps every field exact.
#[tokio::test]
async fn records_written_as_json_before_messagepack_keep_working() {
    let redis = RedisServer::shared();
    let (store, layout) = store(&redis).await;
    let user = UserId::parse("json-era").unwrap();
    let sid = id(&user);
    let first = tessera::session::SessionSecret::generate().hash();
    let mut rec = record("json-era", NOW);
    rec.refresh = Some(tessera::session::model::RefreshState {
        current: first.clone(),
        previous: None,
        rotated_at: NOW,
    });
    let created = store
        .create_with(&sid, &user, &rec, 3_600_000, EVICT, None, NOW)
        .await
        .unwrap();
    rec.credential_version = created.credential_version;
    // Rewrite it the way the earlier release stored it.
    let key = layout.session(&sid);
    let mut conn = redis.conn();
    let packed: Vec<u8> = conn.get(&key).unwrap();
    let old = tessera::store::record::StoredSession::from_bytes(&packed).unwrap();
    let json = serde_json::to_vec(&old).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&json)
        .arg("KEEPTTL")
        .query(&mut conn)
        .unwrap();
    let is_json = |conn: &mut TestConn| conn.get::<_, Vec<u8>>(&key).unwrap()[0] == b'{';
    assert_eq!(store.load(&sid).await.unwrap().unwrap(), rec);

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
    let new_secret = tessera::session::SessionSecret::generate().hash();
    assert!(store
        .rotate(
            &sid,
            &rec.secret_hash,
            &new_secret,
            Some((NOW + 2, Acr::Mfa))
        )
        .await
        .unwrap());
    assert!(store.mark_anomaly(&sid, NOW + 3).await.unwrap());
    let successor = tessera::session::SessionSecret::generate().hash();
    let outcome = store
        .refresh(tessera::session::ports::RefreshRequest {
            id: &sid,
            presented_hash: &first,
            successor_hash: &successor,
            now: NOW + 4,
            grace_ms: 1_000,
            default_idle_ms: 100_000,
        })
        .await
        .unwrap();
    let tessera::session::ports::RefreshOutcome::Rotated(after) = outcome else {
        panic!("refresh of a JSON record: {outcome:?}");
    };
    assert!(is_json(&mut conn), "a script keeps the record's format");
    let loaded = store.load(&sid).await.unwrap().unwrap();
    assert_eq!(*after, loaded);
    assert_eq!(loaded.secret_hash, new_secret);
    assert_eq!(
        (loaded.elevated_at, loaded.elevated_acr),
        (NOW + 2, Some(Acr::Mfa))
    );
    assert_eq!(loaded.anomaly_at, NOW + 3);
    assert_eq!(loaded.last_seen_at, NOW + 4);
    assert_eq!(loaded.refresh.as_ref().unwrap().current, successor);
    assert_eq!(
        (loaded.ua.as_str(), loaded.ip.as_str()),
        (rec.ua.as_str(), rec.ip.as_str())
    );
    let listed = store.list(&user, NOW + 5).await.unwrap();
    assert_eq!(listed.sessions.len(), 1);
    assert!(store.revoke(&sid, &user).await.unwrap());
    assert!(store.load(&sid).await.unwrap().is_none());
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
