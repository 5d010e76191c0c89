//! Load generator for `scripts/bench-revocation` (not a test: it measures, it does not assert).
//!
//! * `revocation A_PUBLIC A_ADMIN B_PUBLIC ADMIN_KEY N`: for N sessions, mint a token on node A,
//!   check node B accepts it, log the session out on A, then poll B's `/v1/auth/check?risk=low`
//!   until it refuses; prints p50/p99/max of the time from the logout's answer to B's refusal.
//! * `cookie A_PUBLIC A_ADMIN B_PUBLIC ADMIN_KEY N REDIS_URL B_ADMIN`: for N sessions, read the session
//!   on node B with its cookie twice (B's near cache holds it), log it out on A, and at once
//!   check the cookie on B; prints how many of those checks B still accepted, and when a
//!   tracking connection of this tool's own (`CLIENT TRACKING ON BCAST`, like a node's) saw
//!   each session key's invalidation, relative to the logout's answer.
//! * `refresh PUBLIC USERNAME PASSWORD CLIENTS SECONDS`: CLIENTS native clients refresh in a
//!   loop for SECONDS; prints refreshes per second.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// When this tool's tracking connection saw each invalidated key.
type Seen = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<Vec<u8>, Instant>>>;

async fn observer(redis_url: &str, prefix: &str) -> anyhow::Result<(Seen, impl Sized)> {
    let seen: Seen = Default::default();
    let sink = seen.clone();
    let push = move |info: redis::PushInfo| -> Result<(), ()> {
        let at = Instant::now();
        if info.kind == redis::PushKind::Invalidate {
            if let Some(redis::Value::Array(keys)) = info.data.first() {
                let mut map = sink.lock().unwrap();
                for key in keys {
                    if let redis::Value::BulkString(k) = key {
                        map.entry(k.clone()).or_insert(at);
                    }
                }
            }
        }
        Ok(())
    };
    let client = redis::Client::open(format!("{redis_url}/?protocol=resp3"))?;
    let config = redis::AsyncConnectionConfig::new().set_push_sender(push);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(prefix)
        .query_async::<()>(&mut conn)
        .await?;
    Ok((seen, conn))
}

async fn cookie(args: &[String]) -> anyhow::Result<()> {
    let (a, a_admin, b, key) = (&args[0], &args[1], &args[2], &args[3]);
    let n: usize = args[4].parse()?;
    let (seen, _conn) = observer(&args[5], "tsr:s:").await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .build()?;
    let check = |token: &str| {
        let c = client.clone();
        let url = format!("{b}/v1/auth/check?risk=low");
        let cookie = format!("__Host-tessera={token}");
        async move {
            c.get(url)
                .header("cookie", cookie)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    let b_metrics = || {
        let c = client.clone();
        let url = format!("{}/metrics", args[6]);
        async move {
            let text = c.get(url).send().await?.text().await?;
            let sum = |result: &str| -> f64 {
                text.lines()
                    .filter(|l| {
                        l.starts_with("tessera_session_cache_lookups_total")
                            && l.contains(&format!("result=\"{result}\""))
                    })
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum()
            };
            anyhow::Ok((sum("hit"), sum("miss")))
        }
    };
    let (hits0, misses0) = b_metrics().await?;
    let mut accepted = 0usize;
    let mut relative = Vec::with_capacity(n);
    for i in 0..n {
        let created: Value = client
            .post(format!("{a_admin}/admin/sessions"))
            .bearer_auth(key)
            .json(&json!({"user_id": format!("bench-cookie-{i}")}))
            .send()
            .await?
            .json()
            .await?;
        let token = created["session_token"].as_str().unwrap_or_default();
        let id = created["session"]["id"].as_str().unwrap_or_default();
        anyhow::ensure!(check(token).await? == 200, "node B must accept the cookie");
        anyhow::ensure!(check(token).await? == 200, "node B must accept the cookie");
        let logout = client
            .post(format!("{a}/v1/logout"))
            .bearer_auth(token)
            .send()
            .await?;
        anyhow::ensure!(logout.status() == 200, "logout failed: {}", logout.status());
        let answered = Instant::now();
        if check(token).await? != 401 {
            accepted += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        let at = loop {
            let found = seen
                .lock()
                .unwrap()
                .iter()
                .find(|(k, _)| k.ends_with(id.as_bytes()))
                .map(|(k, at)| (k.clone(), *at));
            if let Some((k, at)) = found {
                seen.lock().unwrap().remove(&k);
                break at;
            }
            anyhow::ensure!(Instant::now() < deadline, "no invalidation seen for {id}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        // Signed: negative when the invalidation arrived before the logout's answer did.
        let ms = if at >= answered {
            (at - answered).as_secs_f64() * 1000.0
        } else {
            -((answered - at).as_secs_f64() * 1000.0)
        };
        relative.push(ms);
        seen.lock().unwrap().clear();
    }
    let (hits1, misses1) = b_metrics().await?;
    relative.sort_by(|x, y| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal));
    println!("cookie checks on node B right after a logout on node A: {n}");
    println!("  still accepted: {accepted}   target: 0");
    println!(
        "  node B's near cache during the run: {} hits, {} misses (2 reads before each logout, 1 after)",
        hits1 - hits0,
        misses1 - misses0
    );
    println!(
        "  invalidation seen by a tracking client, relative to the logout's answer (negative: before it): p50 {:7.3} ms   p99 {:7.3} ms   max {:7.3} ms",
        percentile(&relative, 0.5),
        percentile(&relative, 0.99),
        relative[relative.len() - 1]
    );
    Ok(())
}

async fn revocation(args: &[String]) -> anyhow::Result<()> {
    let (a, a_admin, b, key) = (&args[0], &args[1], &args[2], &args[3]);
    let n: usize = args[4].parse()?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .build()?;
    let mut after_answer = Vec::with_capacity(n);
    let mut after_send = Vec::with_capacity(n);
    let mut polls = 0usize;
    for i in 0..n {
        let created: Value = client
            .post(format!("{a_admin}/admin/sessions"))
            .bearer_auth(key)
            .json(&json!({"user_id": format!("bench-rev-{i}")}))
            .send()
            .await?
            .json()
            .await?;
        let session = created["session_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let minted: Value = client
            .post(format!("{a}/v1/token"))
            .bearer_auth(&session)
            .send()
            .await?
            .json()
            .await?;
        let jwt = minted["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let check = |jwt: String| {
            let c = client.clone();
            let url = format!("{b}/v1/auth/check?risk=low");
            async move {
                c.get(url)
                    .bearer_auth(jwt)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }
        };
        anyhow::ensure!(
            check(jwt.clone()).await? == 200,
            "node B must accept the fresh token"
        );
        let sent = Instant::now();
        let logout = client
            .post(format!("{a}/v1/logout"))
            .bearer_auth(&session)
            .send()
            .await?;
        anyhow::ensure!(logout.status() == 200, "logout failed: {}", logout.status());
        let answered = Instant::now();
        loop {
            polls += 1;
            if check(jwt.clone()).await? == 401 {
                break;
            }
            anyhow::ensure!(
                sent.elapsed() < Duration::from_secs(30),
                "token still accepted after 30 s"
            );
        }
        after_answer.push(answered.elapsed().as_secs_f64() * 1000.0);
        after_send.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    for v in [&mut after_answer, &mut after_send] {
        v.sort_by(|x, y| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal));
    }
    println!("revocations measured: {n} (node B polled {polls} times in all: 1 per revocation means the first check after the logout answer already refused)");
    for (label, v) in [
        ("logout answered -> B refuses", &after_answer),
        ("logout sent -> B refuses", &after_send),
    ] {
        println!(
            "{label:<30} p50 {:7.2} ms   p99 {:7.2} ms   max {:7.2} ms",
            percentile(v, 0.5),
            percentile(v, 0.99),
            v[v.len() - 1]
        );
    }
    Ok(())
}

async fn refresh(args: &[String]) -> anyhow::Result<()> {
    let (public, username, password) = (args[0].clone(), args[1].clone(), args[2].clone());
    let clients: usize = args[3].parse()?;
    let seconds: u64 = args[4].parse()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let mut tokens = Vec::new();
    for _ in 0..clients {
        let body: Value = http
            .post(format!("{public}/v1/login"))
            .json(&json!({"username": username, "password": password, "client": "native"}))
            .send()
            .await?
            .json()
            .await?;
        let token = body["refresh_token"].as_str().map(str::to_owned);
        tokens.push(token.ok_or_else(|| anyhow::anyhow!("native login failed: {body}"))?);
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut token in tokens {
        let (http, public) = (http.clone(), public.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while Instant::now() < deadline {
                let response = http
                    .post(format!("{public}/v1/token/refresh"))
                    .json(&json!({ "refresh_token": token }))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 200 => {
                        let body: Value = r.json().await.unwrap_or_default();
                        token = body["refresh_token"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        ok += 1;
                    }
                    _ => {
                        failed += 1;
                        break;
                    }
                }
            }
            (ok, failed)
        }));
    }
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f) = t.await?;
        ok += o;
        failed += f;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "refresh: {ok} rotations by {clients} clients in {secs:.1} s = {:.0}/s ({failed} failed)",
        ok as f64 / secs
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("revocation") if args.len() == 6 => revocation(&args[1..]).await,
        Some("refresh") if args.len() == 6 => refresh(&args[1..]).await,
        Some("cookie") if args.len() == 8 => cookie(&args[1..]).await,
        _ => anyhow::bail!(
            "usage: bench_tokens revocation A_PUBLIC A_ADMIN B_PUBLIC ADMIN_KEY N\n       bench_tokens refresh PUBLIC USERNAME PASSWORD CLIENTS SECONDS\n       bench_tokens cookie A_PUBLIC A_ADMIN B_PUBLIC ADMIN_KEY N REDIS_URL B_ADMIN"
        ),
    }
}
