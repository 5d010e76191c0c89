//! The soak: a bounded mixed load on two nodes in two regions (each region its own Redis, with
//! AOF), with a Redis restarted and another stalled midway; then the invariants.
//!
//! `TESSERA_SOAK_SECS` sets the length and turns it on: `scripts/test` runs it for 30 s on its
//! own after the other tests, `scripts/soak [secs]` for longer (default 180). Both print the
//! report. Everything stays on loopback.

use crate::helpers::*;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USERS: usize = 64;
const LIMIT: usize = 5;
const PASSWORD: &str = "soak passphrase, long enough";
const WORKERS: usize = 6;
/// A JWT accepted by the node that did not acknowledge its revocation, this long after the
/// acknowledgement, counts as a violation; sooner, it is the push still on its way (counted
/// and reported as the push lag).
const PUSH_BOUND: Duration = Duration::from_secs(1);

fn user_id(i: usize) -> String {
    format!("u-soak-{i}")
}

fn users_file() -> std::path::PathBuf {
    let hash = tessera::authn::password::hash_password(PASSWORD);
    let mut toml = String::new();
    for i in 0..USERS {
        toml.push_str(&format!(
            "[[users]]\nid = \"{}\"\nusername = \"soak-{i}\"\npassword_hash = \"{hash}\"\nroles = [\"member\"]\n\n",
            user_id(i)
        ));
    }
    let path = std::env::temp_dir().join(random_name("tessera-soak-users-"));
    std::fs::write(&path, toml).unwrap();
    path
}

/// What the client knows about one session.
struct Known {
    user: usize,
    /// The session id, as listings name it.
    id: String,
    /// When the client got the session (its creation acknowledged).
    acked_at: Instant,
    /// Current session token (a step-up rotates it); the earlier ones are in `dead_tokens`.
    token: String,
    jwts: Vec<String>,
    /// When a revocation was acknowledged, and by which node.
    revoked: Option<(Instant, usize)>,
    /// Tokens replaced by a step-up, with when the step-up was acknowledged.
    dead_tokens: Vec<(String, Instant)>,
    /// A native session's refresh token, and every predecessor → successors seen.
    refresh: Option<String>,
}

#[derive(Default)]
struct Report {
    ops: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Each invariant, with its violations (descriptions).
    violations: BTreeMap<&'static str, Vec<String>>,
    checks: BTreeMap<&'static str, u64>,
    push_lags_ms: Vec<f64>,
    successors: HashMap<String, HashSet<String>>,
}

impl Report {
    fn op(&mut self, name: &str, status: u16) {
        self.checked("no 500");
        self.checked("no hang");
        *self
            .ops
            .entry(name.to_owned())
            .or_default()
            .entry(status)
            .or_default() += 1;
        if status >= 500 && status != 503 {
            self.violations
                .entry("no 500")
                .or_default()
                .push(format!("{name}: {status}"));
        }
    }

    fn checked(&mut self, invariant: &'static str) {
        *self.checks.entry(invariant).or_default() += 1;
    }

    fn violation(&mut self, invariant: &'static str, what: String) {
        self.violations.entry(invariant).or_default().push(what);
    }
}

struct Soak {
    nodes: Vec<TestApp>,
    client: reqwest::Client,
    sessions: Mutex<Vec<Known>>,
    report: Mutex<Report>,
}

/// A response: status and JSON body; 0 for a request that got no answer in 5 s (a hang).
struct Answer {
    status: u16,
    body: Value,
}

impl Soak {
    async fn send(&self, op: &str, request: reqwest::RequestBuilder) -> Answer {
        let answer = match request.timeout(Duration::from_secs(5)).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                Answer {
                    status,
                    body: r.json().await.unwrap_or(Value::Null),
                }
            }
            Err(_) => Answer {
                status: 0,
                body: Value::Null,
            },
        };
        let mut report = self.report.lock().unwrap();
        report.op(op, answer.status);
        if answer.status == 0 {
            report.violation("no hang", format!("{op}: no answer in 5 s"));
        }
        answer
    }

    /// A known session, most of the time a live one.
    fn pick(&self) -> Option<usize> {
        let sessions = self.sessions.lock().unwrap();
        let n = sessions.len();
        if n == 0 {
            return None;
        }
        // Mostly the newest sessions (the older ones were mostly evicted by the limit).
        let from = if rand::rng().random_bool(0.8) {
            n.saturating_sub(400)
        } else {
            0
        };
        let mut i = rand::rng().random_range(from..n);
        for _ in 0..8 {
            if sessions[i].revoked.is_none() || rand::rng().random_bool(0.2) {
                break;
            }
            i = rand::rng().random_range(from..n);
        }
        Some(i)
    }

    async fn create(&self, node: usize) {
        let user = rand::rng().random_range(0..USERS);
        let body =
            json!({"user_id": user_id(user), "acr": "pwd", "amr": ["pwd"], "roles": ["member"]});
        let request = self
            .client
            .post(format!("{}/admin/sessions", self.nodes[node].admin))
            .bearer_auth(ADMIN_KEY)
            .json(&body);
        let answer = self.send("create", request).await;
        if answer.status == 201 {
            let id = answer.body["session"]["id"].as_str().unwrap_or_default();
            self.add(user, id, answer.body["session_token"].as_str().unwrap());
        }
    }

    async fn native_login(&self, node: usize) {
        let user = rand::rng().random_range(0..USERS);
        let ip = format!("198.51.100.{}", rand::rng().random_range(1..250));
        let body =
            json!({"username": format!("soak-{user}"), "password": PASSWORD, "client": "native"});
        let request = self
            .client
            .post(format!("{}/v1/login", self.nodes[node].public))
            .header("x-forwarded-for", ip)
            .json(&body);
        let answer = self.send("login (native)", request).await;
        if answer.status == 200 {
            // The session token of a native login is its access token's session; keep the
            // refresh token and check with the access token.
            let jwt = answer.body["access_token"].as_str().unwrap().to_owned();
            let refresh = answer.body["refresh_token"].as_str().unwrap().to_owned();
            let mut sessions = self.sessions.lock().unwrap();
            sessions.push(Known {
                user,
                id: answer.body["session"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                acked_at: Instant::now(),
                token: String::new(),
                jwts: vec![jwt],
                revoked: None,
                dead_tokens: Vec::new(),
                refresh: Some(refresh),
            });
        }
    }

    fn add(&self, user: usize, id: &str, token: &str) {
        self.sessions.lock().unwrap().push(Known {
            user,
            id: id.to_owned(),
            acked_at: Instant::now(),
            token: token.to_owned(),
            jwts: Vec::new(),
            revoked: None,
            dead_tokens: Vec::new(),
            refresh: None,
        });
    }

    /// A session check by token: a 200 for a session whose revocation was acknowledged before
    /// the request started, or for a token a step-up replaced, is a violation.
    async fn check_session(&self, node: usize, i: usize) {
        let (token, dead) = {
            let sessions = self.sessions.lock().unwrap();
            let s = &sessions[i];
            let dead = s.dead_tokens.first().cloned();
            (s.token.clone(), dead)
        };
        // Half the time, try a token a step-up replaced.
        let (token, replaced_at) = match dead {
            Some((old, at)) if rand::rng().random_bool(0.5) => (old, Some(at)),
            _ => (token, None),
        };
        if token.is_empty() {
            return;
        }
        let started = Instant::now();
        let request = self
            .client
            .get(format!("{}/v1/session", self.nodes[node].public))
            .bearer_auth(&token);
        let answer = self.send("check (session)", request).await;
        let revoked = self.sessions.lock().unwrap()[i].revoked;
        let mut report = self.report.lock().unwrap();
        if let Some(at) = replaced_at {
            report.checked("no revoked session accepted");
            if answer.status == 200 && at < started {
                report.violation(
                    "no revoked session accepted",
                    format!(
                        "node {node} accepted a token replaced by a step-up {:?} earlier",
                        started - at
                    ),
                );
            }
        } else if let Some((at, _)) = revoked {
            report.checked("no revoked session accepted");
            if answer.status == 200 && at < started {
                report.violation(
                    "no revoked session accepted",
                    format!(
                        "node {node} accepted a session revoked {:?} earlier",
                        started - at
                    ),
                );
            }
        }
    }

    async fn mint(&self, node: usize, i: usize) {
        let token = self.sessions.lock().unwrap()[i].token.clone();
        if token.is_empty() {
            return;
        }
        let request = self
            .client
            .post(format!("{}/v1/token", self.nodes[node].public))
            .bearer_auth(&token);
        let answer = self.send("mint", request).await;
        if answer.status == 200 {
            let jwt = answer.body["access_token"].as_str().unwrap().to_owned();
            self.sessions.lock().unwrap()[i].jwts.push(jwt);
        }
    }

    async fn check_jwt(&self, node: usize, i: usize) {
        let jwt = {
            let sessions = self.sessions.lock().unwrap();
            let jwts = &sessions[i].jwts;
            if jwts.is_empty() {
                return;
            }
            jwts[rand::rng().random_range(0..jwts.len())].clone()
        };
        let started = Instant::now();
        let request = self
            .client
            .get(format!("{}/v1/auth/check", self.nodes[node].public))
            .bearer_auth(&jwt);
        let answer = self.send("check (access token)", request).await;
        let revoked = self.sessions.lock().unwrap()[i].revoked;
        if let Some((at, by)) = revoked {
            let mut report = self.report.lock().unwrap();
            report.checked("no revoked access token accepted");
            if answer.status == 200 && at < started {
                let after = started - at;
                if by == node || after > PUSH_BOUND {
                    report.violation("no revoked access token accepted", format!("node {node} accepted a token {after:?} after node {by} acknowledged its revocation"));
                } else {
                    report.push_lags_ms.push(after.as_secs_f64() * 1000.0);
                }
            }
        }
    }

    async fn step_up(&self, node: usize, i: usize) {
        let token = self.sessions.lock().unwrap()[i].token.clone();
        if token.is_empty() {
            return;
        }
        let request = self
            .client
            .post(format!("{}/v1/session/step-up", self.nodes[node].public))
            .header("x-forwarded-for", "198.51.100.7")
            .bearer_auth(&token)
            .json(&json!({"password": PASSWORD}));
        let answer = self.send("step-up", request).await;
        if answer.status == 200 {
            let mut sessions = self.sessions.lock().unwrap();
            let s = &mut sessions[i];
            if s.token == token {
                s.dead_tokens.push((token, Instant::now()));
                s.token = answer.body["session_token"].as_str().unwrap().to_owned();
            }
        }
    }

    async fn logout(&self, node: usize, i: usize) {
        let token = self.sessions.lock().unwrap()[i].token.clone();
        if token.is_empty() {
            return;
        }
        let request = self
            .client
            .post(format!("{}/v1/logout", self.nodes[node].public))
            .bearer_auth(&token);
        let answer = self.send("logout", request).await;
        if answer.status == 200 {
            self.revoked(&[i], node);
        }
    }

    async fn kill(&self, node: usize, i: usize) {
        let (id, user) = {
            let s = &self.sessions.lock().unwrap()[i];
            (s.id.clone(), s.user)
        };
        if id.is_empty() {
            return;
        }
        let request = self
            .client
            .delete(format!(
                "{}/admin/users/{}/sessions/{id}",
                self.nodes[node].admin,
                user_id(user)
            ))
            .bearer_auth(ADMIN_KEY);
        let answer = self.send("kill (admin)", request).await;
        if answer.status == 200 || answer.status == 204 {
            self.revoked(&[i], node);
        }
    }

    async fn revoke_all(&self, node: usize) {
        let user = rand::rng().random_range(0..USERS);
        // Sessions whose creation was acknowledged before this request: all must die.
        let before: Vec<usize> = {
            let sessions = self.sessions.lock().unwrap();
            (0..sessions.len())
                .filter(|&i| sessions[i].user == user)
                .collect()
        };
        let request = self
            .client
            .post(format!(
                "{}/admin/users/{}/revoke-all",
                self.nodes[node].admin,
                user_id(user)
            ))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({}));
        let answer = self.send("revoke-all", request).await;
        if answer.status == 200 {
            self.revoked(&before, node);
        }
    }

    async fn refresh(&self, node: usize, i: usize, twice: bool) {
        let Some(token) = self.sessions.lock().unwrap()[i].refresh.clone() else {
            return;
        };
        let send = || {
            let request = self
                .client
                .post(format!("{}/v1/token/refresh", self.nodes[node].public))
                .json(&json!({"refresh_token": token}));
            self.send("refresh", request)
        };
        let answers = if twice {
            let (a, b) = tokio::join!(send(), send());
            vec![a, b]
        } else {
            vec![send().await]
        };
        for answer in answers.iter().filter(|a| a.status == 200) {
            let next = answer.body["refresh_token"].as_str().unwrap().to_owned();
            let jwt = answer.body["access_token"].as_str().unwrap().to_owned();
            self.report
                .lock()
                .unwrap()
                .successors
                .entry(token.clone())
                .or_default()
                .insert(next.clone());
            let mut sessions = self.sessions.lock().unwrap();
            let s = &mut sessions[i];
            s.jwts.push(jwt);
            if s.refresh.as_deref() == Some(token.as_str()) {
                s.refresh = Some(next);
            }
        }
    }

    fn revoked(&self, which: &[usize], node: usize) {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap();
        for &i in which {
            sessions[i].revoked.get_or_insert((now, node));
        }
    }

    /// Every user's sessions, as the admin API lists them (both regions), counting those a
    /// client held before the listing started. (A creation in flight has its record written
    /// before the sessions it evicts are ended, but its token reaches the client only after:
    /// the listing may show it beside them for a moment, while nobody can use it yet.)
    async fn check_limits(&self) {
        for user in 0..USERS {
            let node = rand::rng().random_range(0..self.nodes.len());
            let started = Instant::now();
            let request = self
                .client
                .get(format!(
                    "{}/admin/users/{}/sessions",
                    self.nodes[node].admin,
                    user_id(user)
                ))
                .bearer_auth(ADMIN_KEY);
            let answer = self.send("list (admin)", request).await;
            if answer.status != 200 {
                continue;
            }
            let listed: HashSet<&str> = answer.body["sessions"]
                .as_array()
                .map(|all| all.iter().filter_map(|s| s["id"].as_str()).collect())
                .unwrap_or_default();
            let held = self
                .sessions
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.acked_at < started && listed.contains(s.id.as_str()))
                .count();
            let mut report = self.report.lock().unwrap();
            report.checked("never more sessions than the limit");
            if held > LIMIT {
                report.violation(
                    "never more sessions than the limit",
                    format!("{} held {held}", user_id(user)),
                );
            }
        }
    }
}

async fn worker(soak: Arc<Soak>, until: Instant) {
    while Instant::now() < until {
        let node = rand::rng().random_range(0..soak.nodes.len());
        let roll = rand::rng().random_range(0..100);
        let Some(i) = soak.pick() else {
            soak.create(node).await;
            continue;
        };
        match roll {
            0..=5 => soak.create(node).await,
            6 => soak.native_login(node).await,
            7..=36 => soak.check_session(node, i).await,
            37..=46 => soak.mint(node, i).await,
            47..=74 => soak.check_jwt(node, i).await,
            75..=82 => soak.refresh(node, i, roll == 82).await,
            83..=85 => soak.step_up(node, i).await,
            86..=91 => soak.logout(node, i).await,
            92..=98 => soak.kill(node, i).await,
            _ => soak.revoke_all(node).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_two_nodes_two_regions_through_a_restart_and_a_stall() {
    // Run on its own by `scripts/test` (30 s) and `scripts/soak`, never beside the other tests:
    // it loads both cores on purpose.
    let Some(secs) = std::env::var("TESSERA_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return;
    };
    let aof = ["--appendonly", "yes", "--appendfsync", "everysec"];
    let mut eu = RedisServer::start_with(&aof);
    let us = RedisServer::start_with(&aof);
    let users = users_file();
    let base = {
        let mut s = test_settings(&eu);
        s.region_redis = format!("eu={},us={}", eu.url(), us.url());
        s.users_file = Some(users.clone());
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        s.max_sessions_per_user = LIMIT as u32;
        s.login_success_limit = 1_000_000;
        s.login_ip_limit = 1_000_000;
        s.workers = Some(2);
        s.log = "warn".into();
        s
    };
    let a = spawn_app_with(base.clone()).await;
    let b = spawn_app_with(tessera::Settings {
        region: tessera::session::Region::parse("us").unwrap(),
        ..base.clone()
    })
    .await;
    let soak = Arc::new(Soak {
        nodes: vec![a, b],
        client: reqwest::Client::new(),
        sessions: Mutex::new(Vec::new()),
        report: Mutex::new(Report::default()),
    });

    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| tokio::spawn(worker(soak.clone(), until)))
        .collect();
    let monitor = {
        let soak = soak.clone();
        tokio::spawn(async move {
            while Instant::now() < until {
                soak.check_limits().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // A third in: the eu Redis restarts (a clean shutdown, AOF kept). Two thirds in: the us
    // Redis stalls for 3 s.
    tokio::time::sleep(Duration::from_secs(secs / 3)).await;
    let restart = Instant::now();
    tokio::task::block_in_place(|| eu.restart_gracefully());
    let restarted_in = restart.elapsed();
    tokio::time::sleep(until.saturating_duration_since(Instant::now()) / 2).await;
    us.signal("-STOP");
    tokio::time::sleep(Duration::from_secs(3)).await;
    us.signal("-CONT");

    for w in workers {
        w.await.unwrap();
    }
    monitor.await.unwrap();

    // Every acknowledged revocation reached every node: each of its tokens is refused by both.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let revoked: Vec<(String, Vec<String>)> = soak
        .sessions
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.revoked.is_some())
        .map(|s| (s.token.clone(), s.jwts.clone()))
        .collect();
    for (token, jwts) in &revoked {
        for (n, node) in soak.nodes.iter().enumerate() {
            for jwt in jwts {
                let status = node.check_jwt(jwt).await;
                let mut report = soak.report.lock().unwrap();
                report.checked("every revocation reached every node");
                if status != 401 {
                    report.violation(
                        "every revocation reached every node",
                        format!("node {n} answered {status} for a revoked session's token"),
                    );
                }
            }
            if !token.is_empty() {
                let status = node.get_session_with_bearer(token).await.status().as_u16();
                let mut report = soak.report.lock().unwrap();
                report.checked("every revocation reached every node");
                if status != 401 {
                    report.violation(
                        "every revocation reached every node",
                        format!("node {n} answered {status} for a revoked session"),
                    );
                }
            }
        }
    }
    // No refresh token had two different successors.
    {
        let mut report = soak.report.lock().unwrap();
        let forks: Vec<String> = report
            .successors
            .iter()
            .filter(|(_, next)| next.len() > 1)
            .map(|(_, next)| format!("{} successors", next.len()))
            .collect();
        let families = report.successors.len() as u64;
        *report
            .checks
            .entry("no refresh token with two successors")
            .or_default() += families;
        for fork in forks {
            report.violation("no refresh token with two successors", fork);
        }
    }

    let report = soak.report.lock().unwrap();
    let total: u64 = report.ops.values().flat_map(|s| s.values()).sum();
    let mut out = format!(
        "soak: {secs} s, 2 nodes (eu, us), {WORKERS} clients, {total} requests ({:.0}/s); eu Redis restarted in {restarted_in:?}, us Redis stalled 3 s\n",
        total as f64 / secs as f64
    );
    for (op, statuses) in &report.ops {
        out.push_str(&format!("  {op:<22} {statuses:?}\n"));
    }
    let mut lags = report.push_lags_ms.clone();
    lags.sort_by(f64::total_cmp);
    out.push_str(&format!(
        "  revoked tokens accepted by the other node while the push was on its way: {} (max {:.1} ms)\n",
        lags.len(),
        lags.last().copied().unwrap_or(0.0)
    ));
    let invariants = [
        "no revoked session accepted",
        "no revoked access token accepted",
        "never more sessions than the limit",
        "no refresh token with two successors",
        "no 500",
        "no hang",
        "every revocation reached every node",
    ];
    for name in invariants {
        let checked = report.checks.get(name).copied().unwrap_or(0);
        let violations = report.violations.get(name).map_or(0, Vec::len);
        out.push_str(&format!(
            "  {name:<40} checked {checked:>7}  violations {violations}\n"
        ));
    }
    println!("{out}");
    let violations: Vec<_> = report
        .violations
        .iter()
        .flat_map(|(k, v)| v.iter().take(5).map(move |w| format!("{k}: {w}")))
        .collect();
    assert!(violations.is_empty(), "{out}\n{violations:#?}");
    assert!(
        report
            .checks
            .get("no revoked session accepted")
            .copied()
            .unwrap_or(0)
            > 0
            && report
                .checks
                .get("no revoked access token accepted")
                .copied()
                .unwrap_or(0)
                > 0
            && report
                .checks
                .get("never more sessions than the limit")
                .copied()
                .unwrap_or(0)
                > 0,
        "the soak checked too little to mean anything:\n{out}"
    );
    let _ = std::fs::remove_file(users);
}
