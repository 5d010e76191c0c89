//! RFC 6238 TOTP (SHA-1, 6 digits, 30 s, ±1 step) through the `totp-rs` crate.
//!
//! `verify` returns the matched time step; the caller stores the last used step per user
//! atomically so a code is never accepted twice.

use totp_rs::{Builder, Secret};

fn totp(secret: &[u8], account: &str, issuer: &str) -> Option<totp_rs::Totp> {
    Builder::new()
        .with_secret(Secret::from(secret.to_vec()))
        .with_skew(1)
        .with_account_name(account.replace(':', "_"))
        .with_issuer(Some(issuer.replace(':', "_")))
        .build()
        .ok()
}

/// The time step `code` is valid for at `now_secs`, if any.
pub fn verify(secret: &[u8], code: &str, now_secs: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp(secret, "user", "tessera")?.check(code, now_secs)
}

/// The code for `now_secs` (tests and the CLI's self-check).
pub fn code_at(secret: &[u8], now_secs: u64) -> Option<String> {
    Some(
        totp(secret, "user", "tessera")?
            .generate(now_secs)
            .to_string(),
    )
}

/// A fresh secret (base32) and its `otpauth://` URI for authenticator apps.
pub fn enrol(account: &str, issuer: &str) -> anyhow::Result<(String, String)> {
    let secret = Secret::generate();
    let bytes = secret.as_bytes().to_vec();
    let url = totp(&bytes, account, issuer)
        .ok_or_else(|| anyhow::anyhow!("cannot build TOTP"))?
        .to_url()
        .map_err(|e| anyhow::anyhow!("cannot build otpauth URI: {e:?}"))?;
    Ok((secret.to_base32(), url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vector_matches() {
        // RFC 6238 Appendix B: secret "12345678901234567890", T = 59 s -> 94287082 (8 digits);
        // the 6-digit form is its last six digits.
        let secret = b"12345678901234567890";
        assert_eq!(code_at(secret, 59).unwrap(), "287082");
        assert_eq!(verify(secret, "287082", 59), Some(1));
    }

    #[test]
    fn neighbouring_steps_pass_and_others_fail() {
        let secret = b"12345678901234567890";
        let code = code_at(secret, 3000).unwrap();
        assert_eq!(verify(secret, &code, 3000), Some(100));
        assert_eq!(verify(secret, &code, 3030), Some(100));
        assert_eq!(verify(secret, &code, 3090), None);
        assert_eq!(verify(secret, "12345", 3000), None);
        assert_eq!(verify(secret, "abcdef", 3000), None);
    }

    #[test]
    fn enrolment_yields_a_usable_uri() {
        let (secret, url) = enrol("alice", "Tessera").unwrap();
        assert!(url.starts_with("otpauth://totp/"));
        assert!(url.contains(&secret));
    }
}
