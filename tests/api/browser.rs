//! The account page in a real browser: `tests/browser/account.mjs` drives Debian's chromium
//! (playwright-core, both installed by `scripts/ensure-browser`) against a live node with real
//! Redis. Screenshots go to `target/browser-screenshots/`.

use crate::helpers::*;
use crate::users::*;
use std::process::Command;

#[tokio::test]
async fn the_account_page_works_in_a_real_browser() {
    if topology() != Topology::Single {
        return; // one node on one Redis; the page does not depend on the topology
    }
    let (_redis, app) = app_with_users(|_| {}).await;
    // `localhost`: a potentially trustworthy origin, where the browser keeps a `Secure` cookie
    // over plain HTTP.
    let base = app.public.replace("127.0.0.1", "localhost");
    let root = env!("CARGO_MANIFEST_DIR");
    let shots = format!("{root}/target/browser-screenshots");
    let script = format!("{root}/tests/browser/account.mjs");
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("BASE", base)
            .env("TOTP_USER", "bob")
            .env("TOTP_PASSWORD", BOB_PW)
            .env("TOTP_SECRET", BOB_TOTP_B32)
            .env("PLAIN_USER", "alice")
            .env("PLAIN_PASSWORD", ALICE_PW)
            .env("SHOTS", shots)
            .output()
            .expect("node (scripts/ensure-browser installs it)")
    })
    .await
    .unwrap();
    assert!(
        run.status.success(),
        "browser checks failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}
