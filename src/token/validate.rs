//! The one JWT validation function. jsonwebtoken's defaults are weak (60 s leeway, `nbf`
//! unchecked, `typ` and `crit` never enforced), so every rule is spelled out here and
//! jsonwebtoken is used only for the signature primitive.

use super::keys::SigningAlg;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize};

/// Longest compact JWS we will parse.
pub const MAX_JWT_LEN: usize = 8 * 1024;
/// The `typ` values RFC 9068 allows for access tokens (compared case-insensitively).
pub const ACCESS_TOKEN_TYPES: &[&str] = &["at+jwt", "application/at+jwt"];

/// A public key pinned to one algorithm: a token naming another algorithm never reaches it.
pub struct VerifyingKey {
    pub alg: SigningAlg,
    pub key: DecodingKey,
}

impl VerifyingKey {
    /// Imports a public JWK strictly: EC P-256 or OKP Ed25519 only, exact coordinate lengths,
    /// `use` (if present) must be `sig`, `key_ops` (if present) must allow `verify`, and `alg`
    /// (if present) must agree with the curve.
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self, TokenError> {
        let text = |name: &str| jwk.get(name).and_then(|v| v.as_str());
        let coord = |name: &str, len: usize| -> Result<String, TokenError> {
            let value = text(name).ok_or(TokenError::BadKey)?;
            match URL_SAFE_NO_PAD.decode(value) {
                Ok(bytes) if bytes.len() == len => Ok(value.to_owned()),
                _ => Err(TokenError::BadKey),
            }
        };
        if jwk.get("use").is_some_and(|u| u != "sig") {
            return Err(TokenError::BadKey);
        }
        if let Some(ops) = jwk.get("key_ops") {
            let allows_verify = ops
                .as_array()
                .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
            if !allows_verify {
                return Err(TokenError::BadKey);
            }
        }
        if jwk.get("d").is_some() {
            // A private key has no business in a verifier's key set.
            return Err(TokenError::BadKey);
        }
        let (alg, key) = match (text("kty"), text("crv")) {
            (Some("EC"), Some("P-256")) => (
                SigningAlg::Es256,
                DecodingKey::from_ec_components(&coord("x", 32)?, &coord("y", 32)?)
                    .map_err(|_| TokenError::BadKey)?,
            ),
            (Some("OKP"), Some("Ed25519")) => (
                SigningAlg::EdDsa,
                DecodingKey::from_ed_components(&coord("x", 32)?)
                    .map_err(|_| TokenError::BadKey)?,
            ),
            _ => return Err(TokenError::BadKey),
        };
        if let Some(declared) = text("alg") {
            if SigningAlg::parse(declared) != Some(alg) {
                return Err(TokenError::BadKey);
            }
        }
        Ok(Self { alg, key })
    }
}

/// Where the validator finds keys by `kid`.
pub trait KeyLookup {
    fn key(&self, kid: &str) -> Option<&VerifyingKey>;
}

/// Why a token was refused. Every variant means 401 to a client; the variant goes to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is too long")]
    TooLong,
    #[error("token is not a well-formed compact JWS")]
    Malformed,
    #[error("algorithm not accepted")]
    UnsupportedAlgorithm,
    #[error("header carries a forbidden or unknown parameter")]
    ForbiddenHeader,
    #[error("wrong token type")]
    WrongType,
    #[error("no kid")]
    MissingKid,
    #[error("unknown kid")]
    UnknownKid,
    #[error("algorithm does not match the key")]
    AlgorithmMismatch,
    #[error("bad signature")]
    BadSignature,
    #[error("claims missing or malformed")]
    BadClaims,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token lifetime exceeds the maximum")]
    LifetimeTooLong,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("unusable key")]
    BadKey,
}

/// A JWS whose header passed the strict rules and whose signature verified.
#[derive(Debug)]
pub struct VerifiedJws {
    pub kid: String,
    pub alg: SigningAlg,
    pub payload: Vec<u8>,
}

/// The only header members Tessera's tokens carry. Anything else (`jwk`, `jku`, `x5u`, `x5c`,
/// `crit`, `b64`, …) is refused rather than ignored; duplicates are refused by serde.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
}

const FORBIDDEN_HEADER_MEMBERS: &[&str] =
    &["jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit", "b64"];

/// Verifies a compact JWS: strict header, algorithm pinned to the key found by `kid`, signature.
/// `expected_typ` lists the accepted `typ` values (None: `typ` not required, for raw JWS tests).
pub fn verify_jws(
    token: &str,
    keys: &dyn KeyLookup,
    expected_typ: Option<&[&str]>,
) -> Result<VerifiedJws, TokenError> {
    if token.len() > MAX_JWT_LEN {
        return Err(TokenError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if header_b64.is_empty() || signature_b64.is_empty() {
        return Err(TokenError::Malformed);
    }
    let header_bytes = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| TokenError::Malformed)?;
    let members: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header_bytes).map_err(|_| TokenError::Malformed)?;
    if FORBIDDEN_HEADER_MEMBERS
        .iter()
        .any(|m| members.contains_key(*m))
    {
        return Err(TokenError::ForbiddenHeader);
    }
    let header: StrictHeader =
        serde_json::from_slice(&header_bytes).map_err(|_| TokenError::ForbiddenHeader)?;
    let alg = SigningAlg::parse(&header.alg).ok_or(TokenError::UnsupportedAlgorithm)?;
    if let Some(accepted) = expected_typ {
        let typ = header.typ.as_deref().ok_or(TokenError::WrongType)?;
        if !accepted.iter().any(|t| t.eq_ignore_ascii_case(typ)) {
            return Err(TokenError::WrongType);
        }
    }
    let kid = header.kid.ok_or(TokenError::MissingKid)?;
    let key = keys.key(&kid).ok_or(TokenError::UnknownKid)?;
    if key.alg != alg {
        return Err(TokenError::AlgorithmMismatch);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| TokenError::Malformed)?;
    if alg == SigningAlg::Es256 {
        let raw = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| TokenError::Malformed)?;
        if super::keys::is_high_s(&raw) {
            // The malleable twin of a valid signature: refused, so a token has one spelling.
            return Err(TokenError::BadSignature);
        }
    }
    let signed_len = header_b64.len() + 1 + payload_b64.len();
    let verified = jsonwebtoken::crypto::verify(
        signature_b64,
        &token.as_bytes()[..signed_len],
        &key.key,
        alg.jwt_algorithm(),
    )
    .map_err(|_| TokenError::BadSignature)?;
    if !verified {
        return Err(TokenError::BadSignature);
    }
    Ok(VerifiedJws { kid, alg, payload })
}

/// `aud`: one string or a list (RFC 7519 §4.1.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// (One audience, serialized as a string.)
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(list) => list.iter().any(|a| a == wanted),
        }
    }
}

/// The access-token claims. Every field is required: a missing one fails deserialization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    pub sid: String,
    pub auth_time: i64,
    pub acr: String,
    pub amr: Vec<String>,
    pub roles: Vec<String>,
    /// The user's credential version when the token was minted.
    pub ver: u64,
}

/// What a verifier expects of a token.
#[derive(Clone, Debug)]
pub struct Validation {
    pub issuer: String,
    /// The token must name at least one of these.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds (explicit and small).
    pub leeway_secs: i64,
    /// A token whose `exp - iat` exceeds this is refused, whoever signed it.
    pub max_lifetime_secs: i64,
}

/// The time rules, in checked arithmetic: a token names any `i64` it likes, and a wrapped sum
/// would turn `iat = i64::MIN` into a pass of the lifetime cap. An overflow refuses the token.
fn check_times(claims: &AccessClaims, rules: &Validation, now_secs: i64) -> Result<(), TokenError> {
    let leeway = rules.leeway_secs.max(0);
    let latest_issue = now_secs.checked_add(leeway).ok_or(TokenError::BadClaims)?;
    match claims.exp.checked_add(leeway) {
        Some(deadline) if now_secs < deadline => {}
        Some(_) => return Err(TokenError::Expired),
        None => return Err(TokenError::LifetimeTooLong),
    }
    if claims.nbf > latest_issue || claims.iat > latest_issue {
        return Err(TokenError::NotYetValid);
    }
    match claims.exp.checked_sub(claims.iat) {
        Some(lifetime) if (0..=rules.max_lifetime_secs).contains(&lifetime) => Ok(()),
        _ => Err(TokenError::LifetimeTooLong),
    }
}

/// Tessera's one access-token validation: `verify_jws` with `typ` `at+jwt`, then the claims.
pub fn validate_access_token(
    token: &str,
    keys: &dyn KeyLookup,
    rules: &Validation,
    now_secs: i64,
) -> Result<AccessClaims, TokenError> {
    let jws = verify_jws(token, keys, Some(ACCESS_TOKEN_TYPES))?;
    let claims: AccessClaims =
        serde_json::from_slice(&jws.payload).map_err(|_| TokenError::BadClaims)?;
    if claims.iss != rules.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if !rules.audiences.iter().any(|a| claims.aud.contains(a)) {
        return Err(TokenError::WrongAudience);
    }
    if claims.sub.is_empty() || claims.sid.is_empty() || claims.jti.is_empty() {
        return Err(TokenError::BadClaims);
    }
    // Identity claims end up in headers (`X-Tessera-User`, …) and logs: only the shapes Tessera
    // itself issues pass, so even a holder of a signing key cannot smuggle CR/LF through.
    let sid_ok = claims.sid.len() <= 64
        && claims
            .sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if crate::session::UserId::parse(&claims.sub).is_err()
        || !sid_ok
        || !matches!(claims.acr.as_str(), "pwd" | "mfa")
    {
        return Err(TokenError::BadClaims);
    }
    check_times(&claims, rules, now_secs)?;
    Ok(claims)
}
