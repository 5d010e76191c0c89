//! Loader for `scripts/bench-scale` (not a test: it fills Redis, it does not assert).
//!
//! * `load REDIS_URL PREFIX REGION FROM TO USERS`: creates sessions FROM..TO (user `scale-<i %
//!   USERS>`) through the same store and scripts a node uses, 128 at a time; prints the rate.
//! * `revocations REDIS_URL PREFIX REGION N`: appends N session revocations to the region's
//!   feed, as N logouts would.

use futures_util::stream::{self, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera::session::policy::{LimitPolicy, OnLimit};
use tessera::session::ports::CreateRequest;
use tessera::session::{
    Acr, Region, SessionId, SessionRecord, SessionSecret, SessionStore, UserId,
};
use tessera::store::{KeyLayout, RedisConnections, RedisSessionStore, RedisSettings};

fn settings(url: &str) -> RedisSettings {
    RedisSettings {
        url: url.to_owned(),
        cluster: false,
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(5),
        pool_size: 4,
        ca_file: None,
        wait_replicas: 0,
        wait_timeout: Duration::from_millis(500),
        region: "bench".into(),
    }
}

async fn load(args: &[String]) -> anyhow::Result<()> {
    let (url, prefix, region) = (&args[0], &args[1], Region::parse(&args[2])?);
    let (from, to, users): (u64, u64, u64) = (args[3].parse()?, args[4].parse()?, args[5].parse()?);
    let redis = RedisConnections::connect(&settings(url)).await?;
    let clock = tessera::clock::system();
    let store = Arc::new(RedisSessionStore::new(
        redis.per_thread(),
        KeyLayout::new(prefix.clone()),
        vec![region.clone()],
        clock.clone(),
    ));
    let now = clock.now_ms();
    let started = Instant::now();
    let failures = stream::iter(from..to)
        .map(|i| {
            let (store, region) = (store.clone(), region.clone());
            async move {
                let user = UserId::parse(&format!("scale-{}", i % users.max(1))).unwrap();
                let id = SessionId::generate(&region, &user);
                let record = SessionRecord {
                    user_id: user.clone(),
                    credential_version: 0,
                    created_at: now,
                    last_seen_at: now,
                    idle_expires_at: now + 3_600_000,
                    expires_at: now + 86_400_000,
                    auth_time: now,
                    acr: Acr::Pwd,
                    amr: vec!["pwd".into()],
                    elevated_at: 0,
                    elevated_acr: None,
                    anomaly_at: 0,
                    secret_hash: SessionSecret::generate().hash(),
                    ip: "203.0.113.7".into(),
                    ua: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
                        .into(),
                    device_name: "work laptop".into(),
                    idle_timeout_ms: 0,
                    refresh: None,
                    roles: vec!["member".into()],
                    from_users_file: false,
                };
                store
                    .create(CreateRequest {
                        id: &id,
                        user: &user,
                        record: &record,
                        ttl_ms: 3_600_000,
                        limit: LimitPolicy {
                            max_sessions: 10,
                            on_limit: OnLimit::Evict,
                        },
                        expected_version: None,
                        fingerprint: None,
                        now,
                    })
                    .await
                    .is_err()
            }
        })
        .buffer_unordered(128)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "loaded {} sessions in {secs:.1} s ({:.0}/s), {failures} failures",
        to - from,
        (to - from) as f64 / secs
    );
    anyhow::ensure!(failures == 0, "{failures} sessions were not created");
    Ok(())
}

async fn revocations(args: &[String]) -> anyhow::Result<()> {
    let (url, prefix, region) = (&args[0], &args[1], &args[2]);
    let n: u64 = args[3].parse()?;
    let redis = RedisConnections::connect(&settings(url)).await?;
    let clock = tessera::clock::system();
    let feed = tessera::store::revocations::RedisFeed::new(
        &redis,
        KeyLayout::new(prefix.clone()),
        region,
        16 * 60_000,
        clock.clone(),
    );
    let until = clock.now_ms() + 15 * 60_000;
    let started = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let feed = feed.clone();
            async move {
                let entry = tessera::revocation::Revocation::Session {
                    sid: format!("v1_{region}_{:04x}_{i:022}", i % 65536),
                    until,
                };
                feed.publish(&entry).await
            }
        })
        .buffer_unordered(128)
        .for_each(|r| {
            if let Err(e) = r {
                eprintln!("publish failed: {e}");
            }
            std::future::ready(())
        })
        .await;
    println!(
        "appended {n} revocations in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("load") if args.len() == 7 => load(&args[1..]).await,
        Some("revocations") if args.len() == 5 => revocations(&args[1..]).await,
        _ => anyhow::bail!(
            "usage: scale load REDIS_URL PREFIX REGION FROM TO USERS | scale revocations REDIS_URL PREFIX REGION N"
        ),
    }
}
