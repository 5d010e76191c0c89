//! The README's first command on a fresh checkout: `scripts/dev` with no users file writes demo
//! users and prints their credentials, and both sign-ins (password; password then TOTP) work.

use crate::helpers::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The script's process group, ended when the test ends however it ends.
struct Dev(std::process::Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_first_run_without_a_users_file_signs_in_with_password_and_with_totp() {
    if topology() != Topology::Single {
        return; // one Redis is all it needs; the other topologies add nothing here
    }
    let redis = RedisServer::start();
    let dir = std::env::temp_dir().join(random_name("tessera-dev-"));
    let (public, admin) = (free_port(), free_port());
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new("setsid")
        .arg(format!("{root}/scripts/dev"))
        .current_dir(root)
        .env("TESSERA_DEV_DIR", &dir)
        .env("TESSERA_REDIS_URL", redis.url())
        .env("TESSERA_PUBLIC_ADDR", format!("127.0.0.1:{public}"))
        .env("TESSERA_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .env_remove("TESSERA_USERS_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _dev = Dev(child);
    // What it prints once: each demo user's password, bob's otpauth URI.
    let lines = std::thread::spawn(move || {
        let mut found = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let done = line.contains(r#"{"username":"alice""#);
            found.push(line);
            if done {
                break;
            }
        }
        found
    })
    .join()
    .unwrap();
    let word_after = |who: &str, word: &str| -> String {
        let line = lines
            .iter()
            .find(|l| l.trim_start().starts_with(who))
            .unwrap_or_else(|| panic!("no line for {who}: {lines:?}"));
        let mut words = line.split_whitespace();
        words.find(|w| *w == word).unwrap();
        words.next().unwrap().trim_end_matches(',').to_owned()
    };
    let (alice, bob) = (
        word_after("alice", "password"),
        word_after("bob", "password"),
    );
    let uri = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("otpauth://"))
        .expect("bob's otpauth URI");
    let secret = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap();

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{public}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = client.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "scripts/dev did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let login = |username: &str, password: &str| {
        client
            .post(format!("{base}/v1/login"))
            .json(&json!({ "username": username, "password": password }))
            .send()
    };
    let signed_in = login("alice", &alice).await.unwrap();
    assert_eq!(signed_in.status(), 200);
    assert!(signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("__Host-tessera="));
    let first: Value = login("bob", &bob).await.unwrap().json().await.unwrap();
    assert_eq!(first["mfa_required"], true, "{first}");
    let key = totp_rs::Secret::try_from_base32(secret).unwrap();
    let code = tessera::authn::totp::code_at(&key, unix_ms() as u64 / 1000).unwrap();
    let second = client
        .post(format!("{base}/v1/login/mfa"))
        .json(&json!({ "mfa_token": first["mfa_token"], "totp": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200, "{}", second.text().await.unwrap());
    // Password hashes, TOTP secrets and the admin key: readable by their owner only.
    use std::os::unix::fs::PermissionsExt;
    for file in ["demo-users.toml", "admin-api-key"] {
        let mode = std::fs::metadata(dir.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
