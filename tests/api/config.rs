//! Settings from the environment and the file, checked by the real binary.

use std::process::Command;

/// What the command wrote, stdout then stderr.
fn everything_printed(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn tessera() -> Command {
    crate::helpers::tessera_binary()
}

#[test]
fn environment_variables_override_defaults_and_secrets_are_redacted() {
    let out = tessera()
        .args(["config", "check", "--offline"])
        .env("TESSERA_PUBLIC_ADDR", "0.0.0.0:9000")
        .env("TESSERA_ADMIN_ADDR", "127.0.0.1:9001")
        .env("TESSERA_REDIS_URL", "rediss://:pw@cache:6379")
        .env("TESSERA_ADMIN_API_KEY", "k".repeat(40))
        .env("TESSERA_ISSUER", "https://auth.example")
        .env("TESSERA_AUDIENCE", "shop")
        .env("TESSERA_AUDIENCES", "billing,search")
        .env("TESSERA_KEYS_DIR", "/var/lib/tessera/keys")
        .env("TESSERA_REGION", "eu")
        .env("TESSERA_REGIONS", "eu,us")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["public_addr"], "0.0.0.0:9000");
    assert_eq!(shown["admin_addr"], "127.0.0.1:9001");
    assert_eq!(shown["issuer"], "https://auth.example");
    assert_eq!(shown["audience"], "shop");
    assert_eq!(shown["audiences"], serde_json::json!(["billing", "search"]));
    assert_eq!(shown["keys_dir"], "/var/lib/tessera/keys");
    assert_eq!(shown["regions"], serde_json::json!(["eu", "us"]));
    assert_eq!(shown["admin_api_key"], "<redacted>");
    assert!(!shown.to_string().contains(":pw@"));
}

#[test]
fn a_bad_setting_is_named_with_its_variable() {
    let out = tessera()
        .args(["config", "check", "--offline"])
        .env("TESSERA_TOKEN_LIFETIME_SECS", "3600")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TESSERA_TOKEN_LIFETIME_SECS") && err.contains("900"),
        "{err}"
    );
}

#[test]
fn the_file_is_read_and_the_environment_wins() {
    let path = std::env::temp_dir().join(format!("tessera-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(
        &path,
        "issuer = \"https://from-file\"\nregion = \"us\"\ntoken_lifetime_secs = 120\n",
    )
    .unwrap();
    let out = tessera()
        .args(["config", "check", "--offline", "--config"])
        .arg(&path)
        .env("TESSERA_REGION", "ap")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["issuer"], "https://from-file");
    assert_eq!(shown["token_lifetime_secs"], 120);
    assert_eq!(shown["region"], "ap");
    let _ = std::fs::remove_file(path);
}

#[test]
fn help_explains_the_commands() {
    let out = tessera().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "config", "keys", "TESSERA_"] {
        assert!(text.contains(word), "--help lacks {word}: {text}");
    }
}

/// Every TOML example in the README loads as what it claims to be: a settings file (validated
/// like `tessera config check`) or a users file.
#[test]
fn every_toml_example_in_the_readme_loads() {
    let readme = include_str!("../../README.md");
    let mut checked = 0;
    for block in readme.split("```toml\n").skip(1) {
        let text = block.split("\n```").next().unwrap();
        if text.contains("[[users]]") {
            tessera::authn::Directory::parse(text)
                .unwrap_or_else(|e| panic!("users-file example does not load: {e:#}\n{text}"));
        } else {
            let path =
                std::env::temp_dir().join(format!("tessera-readme-{}.toml", uuid::Uuid::new_v4()));
            std::fs::write(&path, text).unwrap();
            let settings = tessera::Settings::load(Some(&path))
                .and_then(|s| s.validate().map(|_| s))
                .unwrap_or_else(|e| panic!("settings example does not load: {e:#}\n{text}"));
            drop(settings);
            let _ = std::fs::remove_file(&path);
        }
        checked += 1;
    }
    assert!(checked >= 2, "found {checked} examples");
}

#[test]
fn a_file_that_is_not_toml_is_named_by_line_without_quoting_a_secret() {
    // Found by the attack on issue 13: the parser's excerpt printed the admin key.
    let path = std::env::temp_dir().join(format!("tessera-bad-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "issuer = \"https://x\"\nadmin_api_key = \"ADMINKEY-SECRET-0123456789abcdef0123456789\n",
    )
    .unwrap();
    let out = tessera()
        .args(["config", "check", "--offline", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let printed = everything_printed(&out);
    assert!(!out.status.success());
    assert!(printed.contains("not valid TOML at line 2"), "{printed}");
    assert!(!printed.contains("SECRET"), "{printed}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_password_with_a_slash_or_hash_is_never_printed() {
    // Found by the attack on issue 13: such a URL was echoed whole in the error.
    for url in [
        "redis://:Ab/Cd+Ef=SECRETPW@127.0.0.1:6379",
        "redis://:pa#SECRETPW@127.0.0.1:6379",
        "redis://:pa?SECRETPW@127.0.0.1:6379",
    ] {
        let out = tessera()
            .args(["config", "check", "--offline"])
            .env("TESSERA_REDIS_URL", url)
            .output()
            .unwrap();
        let printed = everything_printed(&out);
        assert!(!printed.contains("SECRETPW"), "{url}: {printed}");
    }
}
