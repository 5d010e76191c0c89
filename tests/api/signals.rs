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
    let created: serde_json::Value = client
        .post(format!("http://127.0.0.1:{admin}/admin/sessions"))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({"user_id": "signals", "acr": "pwd", "amr": ["pwd"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = created["session_token"].as_str().unwrap().to_owned();

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
