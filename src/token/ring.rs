//! The key ring every node shares: stored encrypted in Redis, opened into `ActiveKeys`.
//!
//! Each key carries a schedule so rotation (publish first, sign later, retire after the longest
//! token lifetime) is data, not code: `sign_from` and `retire_at` in milliseconds.

use super::kek::Kek;
use super::keys::{KeyMaterial, SigningAlg};
use super::validate::{KeyLookup, VerifyingKey};
use anyhow::{anyhow, Context};
use jsonwebtoken::EncodingKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The ring as stored in Redis (JSON): public schedule, private keys sealed under the KEK.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredRing {
    pub v: u8,
    pub keys: Vec<StoredKey>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub created_at: i64,
    /// Nodes sign with the newest key whose `sign_from` has passed.
    pub sign_from: i64,
    /// After this the key is neither published nor accepted.
    #[serde(default)]
    pub retire_at: Option<i64>,
    pub nonce: String,
    pub ciphertext: String,
}

impl StoredRing {
    /// A ring holding one fresh key that signs at once.
    pub fn first(alg: SigningAlg, kek: &Kek, now: i64) -> anyhow::Result<Self> {
        let key = KeyMaterial::generate(alg)?;
        let (nonce, ciphertext) = kek.seal(&key.kid, key.pkcs8())?;
        Ok(Self {
            v: 1,
            keys: vec![StoredKey {
                kid: key.kid,
                alg,
                created_at: now,
                sign_from: now,
                retire_at: None,
                nonce,
                ciphertext,
            }],
        })
    }

    /// Decrypts every key and checks that each still has the `kid` it was stored under.
    pub fn open(&self, kek: &Kek) -> anyhow::Result<Vec<(StoredKey, KeyMaterial)>> {
        self.keys
            .iter()
            .map(|stored| {
                let pkcs8 = kek.open(&stored.kid, &stored.nonce, &stored.ciphertext)?;
                let key = KeyMaterial::from_pkcs8(stored.alg, pkcs8)
                    .with_context(|| format!("signing key {}", stored.kid))?;
                if key.kid != stored.kid {
                    return Err(anyhow!("signing key {} does not match its kid", stored.kid));
                }
                Ok((stored.clone(), key))
            })
            .collect()
    }
}

/// The keys a node uses right now.
pub struct ActiveKeys {
    signing_kid: String,
    signing_alg: SigningAlg,
    encoding: EncodingKey,
    verifying: HashMap<String, VerifyingKey>,
    jwks: serde_json::Value,
}

impl ActiveKeys {
    /// Picks the signing key and the published/accepted set at `now` (ms).
    pub fn from_ring(opened: &[(StoredKey, KeyMaterial)], now: i64) -> anyhow::Result<Self> {
        let live: Vec<_> = opened
            .iter()
            .filter(|(s, _)| s.retire_at.is_none_or(|r| r > now))
            .collect();
        let (_, signer) = live
            .iter()
            .filter(|(s, _)| s.sign_from <= now)
            .max_by_key(|(s, _)| s.sign_from)
            .ok_or_else(|| anyhow!("the key ring has no key that may sign now"))?;
        let mut verifying = HashMap::new();
        let mut jwks = Vec::new();
        for (_, key) in &live {
            verifying.insert(
                key.kid.clone(),
                VerifyingKey {
                    alg: key.alg,
                    key: key.decoding_key()?,
                },
            );
            jwks.push(key.public_jwk());
        }
        Ok(Self {
            signing_kid: signer.kid.clone(),
            signing_alg: signer.alg,
            encoding: signer.encoding_key(),
            verifying,
            jwks: serde_json::json!({ "keys": jwks }),
        })
    }

    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    pub fn signing_alg(&self) -> SigningAlg {
        self.signing_alg
    }

    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// `{"keys": [...]}`: upcoming, current and still-valid previous public keys.
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }
}

impl KeyLookup for ActiveKeys {
    fn key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.verifying.get(kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_ring_opens_and_signs_with_its_only_key() {
        let kek = Kek::from_base64(&Kek::generate_text().unwrap()).unwrap();
        let ring = StoredRing::first(SigningAlg::Es256, &kek, 1_000).unwrap();
        let json = serde_json::to_string(&ring).unwrap();
        assert!(!json.contains("PRIVATE"));
        let opened = ring.open(&kek).unwrap();
        let active = ActiveKeys::from_ring(&opened, 1_000).unwrap();
        assert_eq!(active.signing_kid(), ring.keys[0].kid);
        assert_eq!(active.jwks()["keys"].as_array().unwrap().len(), 1);
        assert!(active.key(&ring.keys[0].kid).is_some());
    }

    #[test]
    fn retired_keys_are_neither_published_nor_accepted() {
        let kek = Kek::from_base64(&Kek::generate_text().unwrap()).unwrap();
        let mut ring = StoredRing::first(SigningAlg::EdDsa, &kek, 0).unwrap();
        let next = StoredRing::first(SigningAlg::EdDsa, &kek, 500)
            .unwrap()
            .keys
            .remove(0);
        ring.keys[0].retire_at = Some(2_000);
        ring.keys.push(StoredKey {
            sign_from: 1_000,
            ..next
        });
        let opened = ring.open(&kek).unwrap();
        let early = ActiveKeys::from_ring(&opened, 600).unwrap();
        assert_eq!(
            early.signing_kid(),
            ring.keys[0].kid,
            "new key only published"
        );
        assert_eq!(early.jwks()["keys"].as_array().unwrap().len(), 2);
        let later = ActiveKeys::from_ring(&opened, 2_000).unwrap();
        assert_eq!(later.signing_kid(), ring.keys[1].kid);
        assert!(later.key(&ring.keys[0].kid).is_none());
    }
}
