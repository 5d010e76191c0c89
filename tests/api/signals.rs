//! Graceful stop with real signals: on SIGTERM the binary's readiness answers 503 ("draining")
//! at once while it keeps serving, a request in flight still gets its answer, and the process
//! exits 0 within the drain and timeout bounds.

use crate::helpers::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn sigterm_drains_then_finishes_requests_in_flight_then_exits() {
    if topology() != Topology::Single {
        return; // the binary and one Redis; once per run
    }
    let redis = RedisServer::start();
    let (public, admin) = (free_port(), free_port());
    let keys = std::env::temp_dir().join(random_name("tessera-signal-keys-"));
    let mut child = serve_command(&redis, public, admin, &keys)
        .env("TESSERA_REDIS_COMMAND_TIMEOUT_MS", "1500")
        .env("TESSERA_SHUTDOWN_DRAIN_SECS", "1")
        .env("TESSERA_SHUTDOWN_TIMEOUT_SECS", "5")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let public = format!("http://127.0.0.1:{public}");
    let ready = || async {
        client
            .get(format!("{public}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    wait_until("the binary is ready", || async { ready().await == 200 }).await;
    let token = admin_session(&client, admin, "signals").await;

    // A request in flight for ~1.5 s: Redis hangs, the command times out, the answer is 503.
    redis.signal("-STOP");
    let in_flight = {
        let (client, public, token) = (client.clone(), public.clone(), token.clone());
        tokio::spawn(async move {
            client
                .get(format!("{public}/v1/session"))
                .bearer_auth(&token)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.signal("-CONT");

    // Draining: readiness says so at once, and the node still serves.
    let body: serde_json::Value = client
        .get(format!("{public}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "draining");
    assert_eq!(ready().await, 503);
    let served = client
        .get(format!("{public}/v1/session"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200, "still serving while draining");
    // Keep-alive clients are told to take their next request elsewhere (attack on issue 13).
    assert_eq!(
        served.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );

    // The request that was in flight got its answer, not a reset connection.
    let answered = in_flight.await.unwrap();
    assert!(
        matches!(answered, Ok(503) | Ok(200)),
        "in flight: {answered:?}"
    );

    // Exits by itself, cleanly, within drain (1 s) + timeout (5 s).
    let deadline = Instant::now() + Duration::from_secs(8);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running 8 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(1),
        "left before draining"
    );
    // Closed: new connections are refused.
    assert!(client
        .get(format!("{public}/healthz"))
        .send()
        .await
        .is_err());
    let _ = std::fs::remove_dir_all(&keys);
}

/// A session for `user` from the binary's admin API; its token.
async fn admin_session(client: &reqwest::Client, admin: u16, user: &str) -> String {
    let created: serde_json::Value = client
        .post(format!("http://127.0.0.1:{admin}/admin/sessions"))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({"user_id": user, "acr": "pwd", "amr": ["pwd"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["session_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned()
}

/// The lines a child writes to stdout, collected by a thread as they come.
fn collect_lines(
    stdout: std::process::ChildStdout,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use std::io::BufRead;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

#[tokio::test]
async fn sighup_rereads_the_users_file_and_the_log_filter_and_keeps_sessions() {
    use crate::users::{write_users_file, ALICE_PW};
    if topology() != Topology::Single {
        return; // the binary and one Redis; once per run
    }
    let redis = RedisServer::start();
    let (public, admin) = (free_port(), free_port());
    let keys = std::env::temp_dir().join(random_name("tessera-hup-keys-"));
    let users = write_users_file();
    let config = std::env::temp_dir()
        .join(random_name("tessera-hup-"))
        .with_extension("toml");
    // Checked for changes once an hour: only SIGHUP can make this node notice an edit soon.
    let file = |log: &str, lifetime: u32| {
        format!("log = \"{log}\"\nusers_reload_secs = 3600\ntoken_lifetime_secs = {lifetime}\n")
    };
    std::fs::write(&config, file("warn", 300)).unwrap();
    let mut child = serve_command(&redis, public, admin, &keys)
        .env("TESSERA_CONFIG_FILE", &config)
        .env("TESSERA_USERS_FILE", &users)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = collect_lines(child.stdout.take().unwrap());
    let client = reqwest::Client::new();
    let public = format!("http://127.0.0.1:{public}");
    let login = |username: &'static str, password: &'static str| {
        let (client, public) = (client.clone(), public.clone());
        async move {
            client
                .post(format!("{public}/v1/login"))
                .header("origin", &public)
                .json(&serde_json::json!({"username": username, "password": password}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    wait_until("the binary is ready", || async {
        client
            .get(format!("{public}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let bob = admin_session(&client, admin, "u-bob").await;
    let bob_alive = || {
        let (client, public, bob) = (client.clone(), public.clone(), bob.clone());
        async move {
            client
                .get(format!("{public}/v1/session"))
                .bearer_auth(&bob)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(login("alice", ALICE_PW).await, 200);
    let access_lines = || {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("tessera::access"))
            .count()
    };
    assert_eq!(access_lines(), 0, "log = warn writes no access line");

    // Edits: a new user (alice's and bob's entries unchanged), a louder log filter, a setting
    // that needs a restart.
    const NEW_PW: &str = "dave's own long passphrase";
    let mut text = std::fs::read_to_string(&users).unwrap();
    text.push_str(&format!(
        "\n[[users]]\nid = \"u-dave\"\nusername = \"dave\"\npassword_hash = \"{}\"\n",
        tessera::authn::password::hash_password(NEW_PW)
    ));
    std::fs::write(&users, text).unwrap();
    std::fs::write(&config, file("info", 120)).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        login("dave", NEW_PW).await,
        401,
        "not noticed before SIGHUP"
    );

    let hup = || {
        Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
    };
    hup().unwrap();
    wait_until("the new user can log in", || async {
        login("dave", NEW_PW).await == 200
    })
    .await;
    assert_eq!(login("alice", ALICE_PW).await, 200);
    assert_eq!(bob_alive().await, 200, "sessions are kept");
    wait_until("access lines at info", || async { access_lines() > 0 }).await;
    let said = |needle: &str| lines.lock().unwrap().iter().any(|l| l.contains(needle));
    assert!(said("log filter changed"));
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("only after a restart")
                && l.contains("token_lifetime_secs")
                && !l.contains("\"log\"")),
        "the restart-only change is named"
    );

    // An invalid edit changes nothing, and the node keeps serving.
    std::fs::write(&config, file("warn", 5)).unwrap();
    hup().unwrap();
    wait_until("the refusal is logged", || async {
        said("the settings are invalid; nothing changed")
    })
    .await;
    assert_eq!(bob_alive().await, 200);
    let before = access_lines();
    assert_eq!(bob_alive().await, 200);
    wait_until("still logging at info", || async {
        access_lines() > before
    })
    .await;

    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&keys);
    let _ = std::fs::remove_file(&config);
}
