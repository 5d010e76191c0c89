//! A users file for tests: alice (password only), bob (admin, TOTP), carol (disabled).

use std::path::PathBuf;

pub const ALICE_PW: &str = "correct horse battery staple";
pub const BOB_PW: &str = "bob's long passphrase";
pub const BOB_TOTP_B32: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

pub fn bob_totp_secret() -> Vec<u8> {
    totp_rs::Secret::try_from_base32(BOB_TOTP_B32)
        .unwrap()
        .as_bytes()
        .to_vec()
}

/// The TOTP code for bob `offset_steps` steps from now (±1 is accepted).
pub fn bob_code(offset_steps: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    tessera::authn::totp::code_at(&bob_totp_secret(), (now + offset_steps * 30) as u64).unwrap()
}

pub fn users_toml(alice_password: &str) -> String {
    use tessera::authn::password::hash_password;
    format!(
        r#"
[[users]]
id = "u-alice"
username = "alice"
password_hash = "{}"
roles = ["member"]

[[users]]
id = "u-bob"
username = "bob"
password_hash = "{}"
roles = ["admin"]
totp_secret = "{BOB_TOTP_B32}"

[[users]]
id = "u-carol"
username = "carol"
password_hash = "{}"
disabled = true
"#,
        hash_password(alice_password),
        hash_password(BOB_PW),
        hash_password("carol's password"),
    )
}

pub fn write_users_file() -> PathBuf {
    let path = std::env::temp_dir().join(format!("tessera-users-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&path, users_toml(ALICE_PW)).unwrap();
    path
}
