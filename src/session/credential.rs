//! Session credentials: `tsr_s_<session id>.<secret>`.
//!
//! The type prefix means a session token can never be mistaken for another kind of credential
//! (refresh tokens will be `tsr_r_`). Only SHA-256 of the secret is stored; comparisons of
//! secret material run in constant time. `Debug` never prints a secret.

use super::id::{IdError, Region, SessionId};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

const SESSION_PREFIX: &str = "tsr_s_";
const REFRESH_PREFIX: &str = "tsr_r_";
const SECRET_BYTES: usize = 32;
/// base64url length of 32 bytes without padding.
const SECRET_CHARS: usize = 43;
/// Longest session token we will even look at; anything longer is refused before parsing.
pub const MAX_TOKEN_LEN: usize = 160;

/// 256 random bits that prove possession of a session.
#[derive(Clone)]
pub struct SessionSecret(String);

impl SessionSecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash(Sha256::digest(self.0.as_bytes()).into())
    }

    /// The CSRF token for cookie clients, derived from the secret (domain-separated SHA-256).
    ///
    /// Deriving it instead of storing a second random value keeps the Redis record small and
    /// rotates it with the secret; knowing it reveals nothing about the secret.
    pub fn csrf_token(&self) -> CsrfToken {
        let mut h = Sha256::new();
        h.update(b"tessera/csrf/v1\0");
        h.update(self.0.as_bytes());
        CsrfToken(URL_SAFE_NO_PAD.encode(h.finalize()))
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(<redacted>)")
    }
}

/// SHA-256 of a session secret: the only form of it that reaches Redis.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    pub fn from_base64(s: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// Constant-time comparison.
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(<redacted>)")
    }
}

/// The anti-CSRF token handed to cookie clients (sent back in `X-CSRF-Token`).
#[derive(Clone)]
pub struct CsrfToken(String);

impl CsrfToken {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time check of a presented header value.
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfToken(<redacted>)")
    }
}

/// Why a presented credential was refused; all of them mean 401 to the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("credential is too long")]
    TooLong,
    #[error("not a session token")]
    WrongType,
    #[error("malformed session token")]
    Malformed,
    #[error(transparent)]
    Id(#[from] IdError),
}

/// `<prefix><session id>.<secret>`: length, type prefix, secret shape, then the id (which checks
/// its region before any I/O). Shared by every credential type, so they differ only by prefix.
fn parse_credential(
    raw: &str,
    prefix: &str,
    known_regions: &[Region],
) -> Result<(SessionId, SessionSecret), CredentialError> {
    if raw.len() > MAX_TOKEN_LEN {
        return Err(CredentialError::TooLong);
    }
    let rest = raw.strip_prefix(prefix).ok_or(CredentialError::WrongType)?;
    let (id, secret) = rest.split_once('.').ok_or(CredentialError::Malformed)?;
    let secret_ok = secret.len() == SECRET_CHARS
        && URL_SAFE_NO_PAD
            .decode(secret)
            .is_ok_and(|b| b.len() == SECRET_BYTES);
    if !secret_ok {
        return Err(CredentialError::Malformed);
    }
    let id = SessionId::parse(id, known_regions)?;
    Ok((id, SessionSecret(secret.to_owned())))
}

/// A presented (or freshly issued) session token: the session id plus its secret.
#[derive(Clone)]
pub struct SessionToken {
    id: SessionId,
    secret: SessionSecret,
}

impl SessionToken {
    pub fn new(id: SessionId, secret: SessionSecret) -> Self {
        Self { id, secret }
    }

    pub fn parse(raw: &str, known_regions: &[Region]) -> Result<Self, CredentialError> {
        let (id, secret) = parse_credential(raw, SESSION_PREFIX, known_regions)?;
        Ok(Self { id, secret })
    }

    pub fn id(&self) -> &SessionId {
        &self.id
    }

    pub fn secret(&self) -> &SessionSecret {
        &self.secret
    }

    /// The wire form. Call only where the token is handed to its owner (cookie, JSON body).
    pub fn expose(&self) -> String {
        format!("{SESSION_PREFIX}{}.{}", self.id, self.secret.0)
    }
}

/// A native client's refresh token: `tsr_r_<session id>.<secret>`, accepted only by the
/// refresh endpoint. Its successor is derived (HMAC under a server key) from the session id and
/// this secret, so a retried refresh yields the same successor; Redis keeps only hashes.
#[derive(Clone)]
pub struct RefreshToken {
    id: SessionId,
    secret: SessionSecret,
}

impl RefreshToken {
    pub fn new(id: SessionId, secret: SessionSecret) -> Self {
        Self { id, secret }
    }

    pub fn parse(raw: &str, known_regions: &[Region]) -> Result<Self, CredentialError> {
        let (id, secret) = parse_credential(raw, REFRESH_PREFIX, known_regions)?;
        Ok(Self { id, secret })
    }

    pub fn id(&self) -> &SessionId {
        &self.id
    }

    pub fn hash(&self) -> SecretHash {
        self.secret.hash()
    }

    /// The successor under `mac` (HMAC-SHA256 with the server's refresh subkey).
    pub fn successor(&self, mac: impl Fn(&[u8]) -> [u8; 32]) -> RefreshToken {
        let mut input = Vec::with_capacity(64 + self.secret.0.len());
        input.extend_from_slice(self.id.as_str().as_bytes());
        input.push(0);
        input.extend_from_slice(self.secret.0.as_bytes());
        RefreshToken {
            id: self.id.clone(),
            secret: SessionSecret(URL_SAFE_NO_PAD.encode(mac(&input))),
        }
    }

    pub fn expose(&self) -> String {
        format!("{REFRESH_PREFIX}{}.{}", self.id, self.secret.0)
    }

    /// True when following this token's successors (at most `max` steps) reaches the secret
    /// whose hash is `current`: proof that it is a genuine, already spent, generation of the
    /// family. Only the server's `mac` key can walk the chain, so a guess cannot pass.
    pub fn is_earlier_generation_of(
        &self,
        current: &SecretHash,
        mac: impl Fn(&[u8]) -> [u8; 32],
        max: usize,
    ) -> bool {
        let mut token = self.clone();
        for _ in 0..max {
            token = token.successor(&mac);
            if token.hash().matches(current) {
                return true;
            }
        }
        false
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RefreshToken({}, <redacted>)", self.id)
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionToken({}, <redacted>)", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::id::UserId;
    use proptest::prelude::*;

    fn regions() -> Vec<Region> {
        vec![Region::parse("eu").unwrap()]
    }

    fn fresh() -> SessionToken {
        let id = SessionId::generate(&regions()[0], &UserId::parse("alice").unwrap());
        SessionToken::new(id, SessionSecret::generate())
    }

    #[test]
    fn issued_tokens_parse_back() {
        let token = fresh();
        let parsed = SessionToken::parse(&token.expose(), &regions()).unwrap();
        assert_eq!(parsed.id(), token.id());
        assert!(parsed.secret().hash().matches(&token.secret().hash()));
        assert!(token.expose().len() <= MAX_TOKEN_LEN);
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let token = fresh();
        let secret = token.expose().rsplit_once('.').unwrap().1.to_owned();
        assert!(!format!("{token:?}").contains(&secret));
        assert!(!format!("{:?}", token.secret()).contains(&secret));
        assert!(!format!("{:?}", token.secret().csrf_token()).contains(&secret));
    }

    #[test]
    fn other_credential_types_and_damaged_tokens_are_refused() {
        let good = fresh().expose();
        let refresh = good.replacen("tsr_s_", "tsr_r_", 1);
        assert_eq!(
            SessionToken::parse(&refresh, &regions()).unwrap_err(),
            CredentialError::WrongType
        );
        let truncated = &good[..good.len() - 1];
        assert!(SessionToken::parse(truncated, &regions()).is_err());
        let no_dot = good.replace('.', "");
        assert!(SessionToken::parse(&no_dot, &regions()).is_err());
        let long = format!("{good}{}", "A".repeat(200));
        assert_eq!(
            SessionToken::parse(&long, &regions()).unwrap_err(),
            CredentialError::TooLong
        );
    }

    /// `GET /v1/session` writes the token into its JSON without escaping.
    #[test]
    fn csrf_tokens_are_url_safe_base64_with_nothing_to_escape() {
        for _ in 0..100 {
            let token = SessionSecret::generate().csrf_token();
            assert_eq!(token.expose().len(), 43);
            assert!(token
                .expose()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
    }

    #[test]
    fn csrf_token_differs_from_secret_and_rotates_with_it() {
        let a = SessionSecret::generate();
        let b = SessionSecret::generate();
        assert_ne!(a.csrf_token().expose(), a.0);
        assert_ne!(a.csrf_token().expose(), b.csrf_token().expose());
        assert!(a.csrf_token().matches(a.csrf_token().expose()));
        assert!(!a.csrf_token().matches(b.csrf_token().expose()));
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_input_never_panics(s in ".{0,200}") {
            let _ = SessionToken::parse(&s, &regions());
        }

        #[test]
        fn any_single_character_change_of_the_secret_is_detected(pos in 0usize..43, c in "[A-Za-z0-9_-]") {
            let token = fresh();
            let wire = token.expose();
            let (head, secret) = wire.rsplit_once('.').unwrap();
            let mut chars: Vec<char> = secret.chars().collect();
            let replacement = c.chars().next().unwrap();
            prop_assume!(chars[pos] != replacement);
            chars[pos] = replacement;
            let tampered = format!("{head}.{}", chars.into_iter().collect::<String>());
            if let Ok(parsed) = SessionToken::parse(&tampered, &regions()) {
                prop_assert!(!parsed.secret().hash().matches(&token.secret().hash()));
            }
        }
    }
}
