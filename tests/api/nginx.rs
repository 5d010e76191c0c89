//! Debian's nginx in front of a small app, with `deploy/nginx/tessera.conf` (rendered with free
//! loopback ports) asking Tessera about every request.

use crate::helpers::*;
use crate::users::*;
use serde_json::{json, Value};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An app that answers every request with the request head it received (as nginx sent it).
async fn echo_app() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = String::from_utf8_lossy(&head).to_lowercase();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    port
}

/// nginx with the deploy config, killed on drop.
struct Nginx {
    child: Child,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM, not KILL: the master then takes its workers down with it.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn start_nginx(tessera: &str, app: u16) -> Nginx {
    let dir = std::env::temp_dir().join(random_name("tessera-nginx-"));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/nginx/tessera.conf"
    ))
    .unwrap();
    let server = template
        .replace("{{LISTEN}}", &format!("127.0.0.1:{port}"))
        .replace("{{TESSERA}}", tessera)
        .replace("{{APP}}", &format!("127.0.0.1:{app}"));
    std::fs::write(dir.join("server.conf"), server).unwrap();
    let d = dir.display();
    let main = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           include {d}/server.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let child = Command::new("/usr/sbin/nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .spawn()
        .expect("nginx (scripts/ensure-nginx installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: see {d}/error.log"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Nginx { child, port }
}

#[tokio::test]
async fn nginx_lets_in_only_who_tessera_says_and_refuses_a_revoked_session_at_once() {
    if topology() != Topology::Single {
        return; // nginx and one Tessera node; the Redis topology changes nothing here
    }
    let (redis, app) = app_with_users_on(RedisServer::start(), |_| {}).await;
    let tessera = app.public.trim_start_matches("http://").to_owned();
    let nginx = start_nginx(&tessera, echo_app().await);
    let base = format!("http://127.0.0.1:{}", nginx.port);
    let client = reqwest::Client::new();
    let get = |path: &str, cookie: Option<&str>, forged: bool| {
        let mut request = client.get(format!("{base}{path}"));
        if let Some(token) = cookie {
            request = request.header("cookie", format!("__Host-tessera={token}"));
        }
        if forged {
            request = request
                .header("x-tessera-user", "admin")
                .header("x-tessera-acr", "mfa")
                .header("x-forwarded-for", "10.9.8.7");
        }
        request.send()
    };

    // Anonymous: refused, a forged identity header changes nothing, the app never sees it.
    assert_eq!(get("/", None, false).await.unwrap().status(), 401);
    assert_eq!(get("/", None, true).await.unwrap().status(), 401);
    // The checks themselves are not reachable through nginx.
    assert_eq!(
        get("/_tessera/check/low", None, false)
            .await
            .unwrap()
            .status(),
        404
    );

    // Signed in through nginx (Tessera path-routed under the app's host).
    let login = client
        .post(format!("{base}/v1/login"))
        .json(&json!({ "username": "alice", "password": ALICE_PW }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let token = TestApp::cookie_of(&login);
    let body: Value = login.json().await.unwrap();
    let user = body["session"]["user_id"].as_str().unwrap().to_owned();
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();

    let seen = get("/orders", Some(&token), true).await.unwrap();
    assert_eq!(seen.status(), 200);
    let head = seen.text().await.unwrap();
    assert!(head.contains(&format!("x-tessera-user: {user}")), "{head}");
    assert!(
        !head.contains("x-tessera-user: admin"),
        "forged header arrived: {head}"
    );
    assert!(head.contains("x-tessera-acr: pwd"), "{head}");
    assert!(!head.contains("x-tessera-acr: mfa"), "{head}");
    assert!(head.contains("x-forwarded-for: 127.0.0.1"), "{head}");
    assert!(
        !head.contains("10.9.8.7"),
        "a client-sent X-Forwarded-For arrived: {head}"
    );

    // A high-risk location: a password-only session gets the RFC 9470 challenge.
    let high = get("/admin/payments", Some(&token), false).await.unwrap();
    assert_eq!(high.status(), 401);
    let challenge = high.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("insufficient_user_authentication"),
        "{challenge}"
    );

    // Paths an app may read as admin are admin to nginx too, or refused outright; a duplicate
    // session cookie is a refusal, never an outage answer.
    for path in ["/ADMIN/payments", "//Admin/x", "/admin"] {
        let answer = get(path, Some(&token), false).await.unwrap();
        assert_eq!(answer.status(), 401, "{path}");
        assert!(answer.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_user_authentication"));
        assert_eq!(
            answer.headers().get_all("www-authenticate").iter().count(),
            1
        );
    }
    for path in ["/admin;/x", "/admin..;/x", "/admin%5cx", "/%2561dmin/x"] {
        let answer = client
            .get(format!("{base}{path}"))
            .header("cookie", format!("__Host-tessera={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{path}");
    }
    let doubled = client
        .get(format!("{base}/orders"))
        .header(
            "cookie",
            format!("__Host-tessera={token}; __Host-tessera=x"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(doubled.status(), 401);

    // Logged out through nginx: the very next request is refused.
    let logout = client
        .post(format!("{base}/v1/logout"))
        .header("cookie", format!("__Host-tessera={token}"))
        .header("origin", &base)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    let status = logout.status();
    assert_eq!(
        status,
        200,
        "{:?} {}",
        logout.headers().clone(),
        logout.text().await.unwrap()
    );
    assert_eq!(
        get("/orders", Some(&token), false).await.unwrap().status(),
        401
    );

    // Redis down: a session check cannot be made; the client gets 503 JSON, never the app.
    let other = client
        .post(format!("{base}/v1/login"))
        .json(&json!({ "username": "alice", "password": ALICE_PW }))
        .send()
        .await
        .unwrap();
    let live = TestApp::cookie_of(&other);
    redis.signal("-STOP");
    let down = get("/orders", Some(&live), false).await.unwrap();
    redis.signal("-CONT");
    assert_eq!(down.status(), 503);
    let error: Value = down.json().await.unwrap();
    assert_eq!(error["error"], "unavailable");
}
