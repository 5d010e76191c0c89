//! Mints access tokens from live sessions and validates them with the node's own keys.

use super::ring::ActiveKeys;
use super::validate::{validate_access_token, AccessClaims, Audience, TokenError, Validation};
use crate::session::ports::{AccessToken, MintError, TokenIssuer};
use crate::session::{Session, UnixMillis};
use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Header;
use std::sync::{Arc, RwLock};

/// Token settings (validated in `config.rs`).
#[derive(Clone, Debug)]
pub struct IssuerSettings {
    pub issuer: String,
    /// Used when a client asks for no particular audience.
    pub default_audience: String,
    /// Every audience a token may be minted for (includes the default).
    pub audiences: Vec<String>,
    pub lifetime_secs: i64,
    pub leeway_secs: i64,
}

/// Signs with the ring's current key. The key set is swappable so a rotation needs no restart.
#[derive(Clone)]
pub struct Issuer {
    settings: IssuerSettings,
    keys: Arc<RwLock<Arc<ActiveKeys>>>,
}

/// The longest access-token lifetime Tessera accepts anywhere (DESIGN §4).
pub const MAX_LIFETIME_SECS: i64 = 15 * 60;

impl Issuer {
    pub fn new(settings: IssuerSettings, keys: ActiveKeys) -> Self {
        Self {
            settings,
            keys: Arc::new(RwLock::new(Arc::new(keys))),
        }
    }

    pub fn keys(&self) -> Arc<ActiveKeys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace_keys(&self, keys: ActiveKeys) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }

    /// The rules Tessera applies to its own tokens (any configured audience accepted).
    pub fn validation(&self) -> Validation {
        Validation {
            issuer: self.settings.issuer.clone(),
            audiences: self.settings.audiences.clone(),
            leeway_secs: self.settings.leeway_secs,
            max_lifetime_secs: MAX_LIFETIME_SECS,
        }
    }

    pub fn validate(&self, token: &str, now_secs: i64) -> Result<AccessClaims, TokenError> {
        validate_access_token(token, self.keys().as_ref(), &self.validation(), now_secs)
    }
}

impl TokenIssuer for Issuer {
    fn mint(
        &self,
        session: &Session,
        audience: Option<&str>,
        now: UnixMillis,
    ) -> Result<AccessToken, MintError> {
        let audience = match audience {
            None => self.settings.default_audience.clone(),
            Some(a) if self.settings.audiences.iter().any(|x| x == a) => a.to_owned(),
            Some(_) => return Err(MintError::UnknownAudience),
        };
        let now_secs = now.div_euclid(1000);
        let record = &session.record;
        let claims = AccessClaims {
            iss: self.settings.issuer.clone(),
            sub: record.user_id.as_str().to_owned(),
            aud: Audience::One(audience),
            // Never outlive the session itself.
            exp: (now_secs + self.settings.lifetime_secs).min(
                record
                    .idle_expires_at
                    .min(record.expires_at)
                    .div_euclid(1000),
            ),
            nbf: now_secs,
            iat: now_secs,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            sid: session.id.to_string(),
            auth_time: record.auth_time.div_euclid(1000),
            acr: record.acr.as_str().to_owned(),
            amr: record.amr.clone(),
            roles: record.roles.clone(),
            ver: record.credential_version,
        };
        let keys = self.keys();
        let mut header = Header::new(keys.signing_alg().jwt_algorithm());
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(keys.signing_kid().to_owned());
        // jsonwebtoken's `encode` would parse the PKCS#8 key again for every token (as costly as
        // the signature itself); the key ring keeps a parsed signer instead. The serialization
        // is the same compact JWS, and jsonwebtoken still verifies (tests check both ways).
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).context("header")?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).context("claims")?),
        );
        let signature = keys
            .signer()
            .sign(message.as_bytes())
            .context("signing the access token failed")?;
        let token = format!("{message}.{signature}");
        metrics_mint();
        Ok(AccessToken {
            token,
            expires_in_secs: (claims.exp - now_secs).max(0) as u64,
        })
    }
}

/// Token mints are counted, not audited (high volume).
fn metrics_mint() {
    metrics::counter!("tessera_access_tokens_minted_total").increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Acr, Region, SessionId, SessionRecord, UserId};
    use crate::token::{Kek, SigningAlg, StoredRing};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    const NOW: i64 = 1_800_000_000_000;

    fn issuer(alg: SigningAlg) -> Issuer {
        let kek = Kek::from_base64(&Kek::generate_text().unwrap()).unwrap();
        let ring = StoredRing::first(alg, &kek, 0).unwrap();
        let keys = ActiveKeys::from_ring(&ring.open(&kek).unwrap(), 0).unwrap();
        Issuer::new(
            IssuerSettings {
                issuer: "https://auth.example".into(),
                default_audience: "api".into(),
                audiences: vec!["api".into(), "billing".into()],
                lifetime_secs: 300,
                leeway_secs: 5,
            },
            keys,
        )
    }

    fn session() -> Session {
        let user = UserId::parse("alice").unwrap();
        Session {
            id: SessionId::generate(&Region::parse("eu").unwrap(), &user),
            record: SessionRecord {
                user_id: user.clone(),
                credential_version: 3,
                created_at: NOW,
                last_seen_at: NOW,
                idle_expires_at: NOW + 3_600_000,
                expires_at: NOW + 86_400_000,
                auth_time: NOW,
                acr: Acr::Mfa,
                amr: vec!["pwd".into(), "otp".into()],
                elevated_at: 0,
                elevated_acr: None,
                anomaly_at: 0,
                secret_hash: crate::session::SessionSecret::generate().hash(),
                ip: String::new(),
                ua: String::new(),
                device_name: String::new(),
                roles: vec!["admin".into()],
                idle_timeout_ms: 0,
                refresh: None,
                from_users_file: false,
            },
        }
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// Re-signs `header`.`claims` with the issuer's real key (a forger with the key could do
    /// no better; these prove the *rules*, not the signature, refuse the token).
    fn resign(issuer: &Issuer, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let keys = issuer.keys();
        let message = format!("{}.{}", b64(header), b64(claims));
        let sig = keys.signer().sign(message.as_bytes()).unwrap();
        format!("{message}.{sig}")
    }

    fn parts(token: &str) -> (serde_json::Value, serde_json::Value) {
        let mut it = token.split('.');
        let h = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
        let c = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
        (
            serde_json::from_slice(&h).unwrap(),
            serde_json::from_slice(&c).unwrap(),
        )
    }

    #[test]
    fn minted_tokens_validate_with_the_full_claim_set() {
        for alg in [SigningAlg::Es256, SigningAlg::EdDsa] {
            let issuer = issuer(alg);
            let token = issuer.mint(&session(), None, NOW).unwrap();
            assert_eq!(token.expires_in_secs, 300);
            let claims = issuer.validate(&token.token, NOW / 1000).unwrap();
            assert_eq!(claims.sub, "alice");
            assert_eq!(claims.acr, "mfa");
            assert_eq!(claims.amr, vec!["pwd", "otp"]);
            assert_eq!(claims.roles, vec!["admin"]);
            assert_eq!(claims.ver, 3);
            let (header, _) = parts(&token.token);
            assert_eq!(header["typ"], "at+jwt");
            assert_eq!(header["alg"], alg.name());
            assert_eq!(header["kid"], issuer.keys().signing_kid());
        }
    }

    #[test]
    fn tokens_are_signed_low_s_and_their_high_s_twins_are_refused() {
        let issuer = issuer(SigningAlg::Es256);
        for _ in 0..32 {
            let token = issuer.mint(&session(), None, NOW).unwrap().token;
            let (signed, sig) = token.rsplit_once('.').unwrap();
            let raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
            assert!(!crate::token::keys::is_high_s(&raw), "signed low-S only");
            let low = p256::ecdsa::Signature::from_slice(&raw).unwrap();
            // (r, n - s): the same claims under a second token string.
            let high = p256::ecdsa::Signature::from_scalars(low.r(), -low.s()).unwrap();
            let twin = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(high.to_bytes()));
            assert!(issuer.validate(&token, NOW / 1000).is_ok());
            assert_eq!(
                issuer.validate(&twin, NOW / 1000),
                Err(TokenError::BadSignature)
            );
        }
    }

    #[test]
    fn identity_claims_outside_tesseras_own_shapes_are_refused() {
        let issuer = issuer(SigningAlg::Es256);
        let good = issuer.mint(&session(), None, NOW).unwrap().token;
        let (header, claims) = parts(&good);
        for (name, value) in [
            ("sub", "alice\r\nX-Evil: 1"),
            ("sub", "bad user"),
            ("sid", "v1_eu\r\n"),
            ("acr", "mfa\r\nSet-Cookie: x"),
            ("acr", "gold"),
        ] {
            let mut c = claims.clone();
            c[name] = serde_json::Value::String(value.into());
            let token = resign(&issuer, &header, &c);
            assert_eq!(
                issuer.validate(&token, NOW / 1000),
                Err(TokenError::BadClaims),
                "{name} = {value:?}"
            );
        }
    }

    #[test]
    fn extreme_times_are_refused_without_overflow() {
        let issuer = issuer(SigningAlg::Es256);
        let good = issuer.mint(&session(), None, NOW).unwrap().token;
        let (header, claims) = parts(&good);
        let now = NOW / 1000;
        for (exp, iat, nbf) in [
            (i64::MAX, now, now),
            (now + 60, i64::MIN, now),
            (i64::MAX, i64::MIN, i64::MIN),
            (i64::MIN, now, now),
            (now + 60, now, i64::MAX),
            (i64::MAX, i64::MAX, i64::MAX),
        ] {
            let mut c = claims.clone();
            c["exp"] = exp.into();
            c["iat"] = iat.into();
            c["nbf"] = nbf.into();
            let token = resign(&issuer, &header, &c);
            let refused = issuer.validate(&token, now);
            assert!(
                refused.is_err(),
                "exp {exp} iat {iat} nbf {nbf}: {refused:?}"
            );
            // And at the extreme ends of "now" too.
            for at in [i64::MIN, i64::MAX] {
                let _ = issuer.validate(&token, at); // must not panic
            }
        }
    }

    #[test]
    fn expiry_and_not_before_use_the_explicit_small_leeway() {
        let issuer = issuer(SigningAlg::Es256);
        let token = issuer.mint(&session(), None, NOW).unwrap().token;
        let now = NOW / 1000;
        assert!(issuer.validate(&token, now + 304).is_ok());
        assert_eq!(issuer.validate(&token, now + 305), Err(TokenError::Expired));
        assert!(issuer.validate(&token, now - 5).is_ok());
        assert_eq!(
            issuer.validate(&token, now - 6),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn audiences_come_from_the_allow_list_only() {
        let issuer = issuer(SigningAlg::Es256);
        let token = issuer.mint(&session(), Some("billing"), NOW).unwrap();
        let (_, claims) = parts(&token.token);
        assert_eq!(claims["aud"], "billing");
        assert!(matches!(
            issuer.mint(&session(), Some("evil"), NOW),
            Err(MintError::UnknownAudience)
        ));
    }

    #[test]
    fn forged_and_non_conforming_tokens_are_refused() {
        let issuer = issuer(SigningAlg::Es256);
        let good = issuer.mint(&session(), None, NOW).unwrap().token;
        let (header, claims) = parts(&good);
        let now = NOW / 1000;
        let with_header = |patch: serde_json::Value| {
            let mut h = header.clone();
            for (k, v) in patch.as_object().unwrap() {
                if v.is_null() {
                    h.as_object_mut().unwrap().remove(k);
                } else {
                    h[k] = v.clone();
                }
            }
            h
        };
        let with_claims = |patch: serde_json::Value| {
            let mut c = claims.clone();
            for (k, v) in patch.as_object().unwrap() {
                if v.is_null() {
                    c.as_object_mut().unwrap().remove(k);
                } else {
                    c[k] = v.clone();
                }
            }
            c
        };

        // alg: none with an empty signature, and with the original signature kept.
        let none_header = with_header(serde_json::json!({"alg": "none"}));
        let none = format!("{}.{}.", b64(&none_header), b64(&claims));
        assert_eq!(issuer.validate(&none, now), Err(TokenError::Malformed));
        let none_sig = format!(
            "{}.{}.{}",
            b64(&none_header),
            b64(&claims),
            good.rsplit('.').next().unwrap()
        );
        assert_eq!(
            issuer.validate(&none_sig, now),
            Err(TokenError::UnsupportedAlgorithm)
        );

        // HS256 "signed" with the public key (key confusion).
        let keys = issuer.keys();
        let jwk = keys.jwks()["keys"][0].to_string();
        let hs_header = with_header(serde_json::json!({"alg": "HS256"}));
        let message = format!("{}.{}", b64(&hs_header), b64(&claims));
        let sig = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(jwk.as_bytes()),
            jsonwebtoken::Algorithm::HS256,
        )
        .unwrap();
        assert_eq!(
            issuer.validate(&format!("{message}.{sig}"), now),
            Err(TokenError::UnsupportedAlgorithm)
        );

        // EdDSA header on an ES256 key: the algorithm is pinned to the key.
        let ed = resign(
            &issuer,
            &with_header(serde_json::json!({"alg": "EdDSA"})),
            &claims,
        );
        assert_eq!(
            issuer.validate(&ed, now),
            Err(TokenError::AlgorithmMismatch)
        );

        let cases = [
            (
                with_header(serde_json::json!({"kid": "nope"})),
                claims.clone(),
                TokenError::UnknownKid,
            ),
            (
                with_header(serde_json::json!({"kid": null})),
                claims.clone(),
                TokenError::MissingKid,
            ),
            (
                with_header(serde_json::json!({"crit": ["exp"]})),
                claims.clone(),
                TokenError::ForbiddenHeader,
            ),
            (
                with_header(serde_json::json!({"jku": "https://evil"})),
                claims.clone(),
                TokenError::ForbiddenHeader,
            ),
            (
                with_header(serde_json::json!({"x5u": "https://evil"})),
                claims.clone(),
                TokenError::ForbiddenHeader,
            ),
            (
                with_header(serde_json::json!({"jwk": keys.jwks()["keys"][0].clone()})),
                claims.clone(),
                TokenError::ForbiddenHeader,
            ),
            (
                with_header(serde_json::json!({"zip": "DEF"})),
                claims.clone(),
                TokenError::ForbiddenHeader,
            ),
            (
                with_header(serde_json::json!({"typ": "JWT"})),
                claims.clone(),
                TokenError::WrongType,
            ),
            (
                with_header(serde_json::json!({"typ": null})),
                claims.clone(),
                TokenError::WrongType,
            ),
            (
                header.clone(),
                with_claims(serde_json::json!({"iss": "https://evil"})),
                TokenError::WrongIssuer,
            ),
            (
                header.clone(),
                with_claims(serde_json::json!({"aud": "other"})),
                TokenError::WrongAudience,
            ),
            (
                header.clone(),
                with_claims(serde_json::json!({"sid": null})),
                TokenError::BadClaims,
            ),
            (
                header.clone(),
                with_claims(serde_json::json!({"jti": null})),
                TokenError::BadClaims,
            ),
            (
                header.clone(),
                with_claims(serde_json::json!({"exp": null})),
                TokenError::BadClaims,
            ),
            (
                header.clone(),
                with_claims(serde_json::json!({"nbf": now + 60})),
                TokenError::NotYetValid,
            ),
            (
                header.clone(),
                with_claims(serde_json::json!({"exp": now + 86_400})),
                TokenError::LifetimeTooLong,
            ),
        ];
        for (h, c, expected) in cases {
            let token = resign(&issuer, &h, &c);
            assert_eq!(issuer.validate(&token, now), Err(expected), "{h} {c}");
        }
        // application/at+jwt is the long form RFC 9068 also allows.
        let long = resign(
            &issuer,
            &with_header(serde_json::json!({"typ": "application/at+jwt"})),
            &claims,
        );
        assert!(issuer.validate(&long, now).is_ok());

        // A real token from another key ring, same kid: bad signature.
        let stranger = self::issuer(SigningAlg::Es256);
        let foreign = stranger.mint(&session(), None, NOW).unwrap().token;
        let (fh, fc) = parts(&foreign);
        let mut fh = fh;
        fh["kid"] = header["kid"].clone();
        let forged = resign(&stranger, &fh, &fc);
        assert_eq!(issuer.validate(&forged, now), Err(TokenError::BadSignature));

        // Truncation and garbage.
        for bad in [
            "",
            ".",
            "..",
            "a.b",
            "a.b.c.d",
            &good[..good.len() - 3],
            &"A".repeat(10_000),
        ] {
            assert!(issuer.validate(bad, now).is_err(), "{bad}");
        }
    }
}
