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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredRing {
    pub v: u8,
    pub keys: Vec<StoredKey>,
    /// Random, set when a ring is first created and kept by every rotation: two rings with
    /// different origins were created independently (a node started while Redis had lost the
    /// ring), and only those are merged. Within one origin a key missing from Redis was retired
    /// on purpose and must never come back from a stale copy.
    #[serde(default)]
    pub origin: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
            origin: uuid::Uuid::new_v4().simple().to_string(),
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

    /// The ring after a rotation at `now`: a fresh key published at once and signing after
    /// `publish_delay_ms` (the JWKS cache lifetime, so every verifier has it first); every
    /// older key that has no retirement yet retires `retire_after_ms` (the longest token
    /// lifetime plus leeway) after the new key starts signing; keys already retired are dropped.
    pub fn rotated(
        &self,
        alg: SigningAlg,
        kek: &Kek,
        now: i64,
        publish_delay_ms: i64,
        retire_after_ms: i64,
    ) -> anyhow::Result<Self> {
        let key = KeyMaterial::generate(alg)?;
        let (nonce, ciphertext) = kek.seal(&key.kid, key.pkcs8())?;
        let sign_from = now + publish_delay_ms;
        let mut keys: Vec<StoredKey> = self
            .keys
            .iter()
            .filter(|k| k.retire_at.is_none_or(|r| r > now))
            .cloned()
            .map(|mut k| {
                k.retire_at.get_or_insert(sign_from + retire_after_ms);
                k
            })
            .collect();
        keys.push(StoredKey {
            kid: key.kid,
            alg,
            created_at: now,
            sign_from,
            retire_at: None,
            nonce,
            ciphertext,
        });
        Ok(Self {
            v: 1,
            keys,
            origin: self.origin.clone(),
        })
    }

    /// This ring plus the keys of `held` it lacks that are still live at `now`; `None` when it
    /// lacks none. After Redis lost the ring and another node made a new one, merging makes
    /// every node publish every key any node may still sign or have signed with.
    pub fn merged_with(&self, held: &StoredRing, now: i64) -> Option<Self> {
        if held.origin == self.origin {
            return None; // same lineage: what Redis lacks was retired, not lost
        }
        let missing: Vec<StoredKey> = held
            .keys
            .iter()
            .filter(|k| k.retire_at.is_none_or(|r| r > now))
            .filter(|k| !self.keys.iter().any(|mine| mine.kid == k.kid))
            .cloned()
            .collect();
        if missing.is_empty() {
            return None;
        }
        let mut keys = self.keys.clone();
        keys.extend(missing);
        keys.sort_by(|a, b| (a.sign_from, &a.kid).cmp(&(b.sign_from, &b.kid)));
        Some(Self {
            v: 1,
            keys,
            origin: self.origin.clone(),
        })
    }

    /// True when a key starts signing or retires in `(after, now]`: the keys in use at `now`
    /// may differ from those at `after` even if the ring itself did not change.
    pub fn schedule_moved(&self, after: i64, now: i64) -> bool {
        let passed = |t: i64| after < t && t <= now;
        self.keys
            .iter()
            .any(|k| passed(k.sign_from) || k.retire_at.is_some_and(passed))
    }

    /// The newest key's creation time.
    /// Can this ring serve a node now: every key opens under `kek`, one may sign at `now`, and
    /// no key claims to be created in the future (beyond a minute of clock skew)? A copy that
    /// fails this is never restored, started from or followed: it could only stop nodes or,
    /// with a future `created_at`, hide every genuine rotation behind it.
    pub fn usable(&self, kek: &Kek, now: i64) -> anyhow::Result<()> {
        if let Some(k) = self.keys.iter().find(|k| k.created_at > now + 60_000) {
            anyhow::bail!("key {} claims to be created in the future", k.kid);
        }
        ActiveKeys::from_ring(&self.open(kek)?, now).map(|_| ())
    }

    pub fn newest(&self) -> i64 {
        self.keys.iter().map(|k| k.created_at).max().unwrap_or(0)
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
    signer: super::keys::Signer,
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
            // Ties (two rings merged after a data loss) break by kid: every node picks the same.
            .max_by_key(|(s, _)| (s.sign_from, s.kid.clone()))
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
            signer: signer.signer()?,
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

    /// The current key, parsed once, for the minting hot path.
    pub fn signer(&self) -> &super::keys::Signer {
        &self.signer
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
    fn merging_adds_only_the_live_keys_a_ring_lacks_and_every_node_picks_one_signer() {
        let kek = Kek::from_base64(&Kek::generate_text().unwrap()).unwrap();
        let ours = StoredRing::first(SigningAlg::Es256, &kek, 1_000).unwrap();
        let theirs = StoredRing::first(SigningAlg::Es256, &kek, 1_000).unwrap();
        assert!(ours.merged_with(&ours, 2_000).is_none(), "nothing missing");
        let union = theirs.merged_with(&ours, 2_000).unwrap();
        assert_eq!(union.keys.len(), 2);
        let other_way = ours.merged_with(&theirs, 2_000).unwrap();
        let signer = |r: &StoredRing| {
            ActiveKeys::from_ring(&r.open(&kek).unwrap(), 2_000)
                .unwrap()
                .signing_kid()
                .to_owned()
        };
        assert_eq!(
            signer(&union),
            signer(&other_way),
            "one signer, whichever merged"
        );
        let mut retired = ours.clone();
        retired.keys[0].retire_at = Some(1_500);
        assert!(
            theirs.merged_with(&retired, 2_000).is_none(),
            "retired keys stay out"
        );
        // Within one lineage a key missing from Redis was retired by a rotation: a stale copy
        // never brings it back.
        let rotated = ours.rotated(SigningAlg::Es256, &kek, 3_000, 0, 0).unwrap();
        let mut after_retirement = rotated.clone();
        after_retirement.keys.remove(0);
        assert!(after_retirement.merged_with(&ours, 4_000).is_none());
        assert!(
            union.merged_with(&ours, 2_000).is_none(),
            "a merged ring is complete"
        );
    }

    #[test]
    fn the_schedule_moves_when_a_key_starts_signing_or_retires() {
        let kek = Kek::from_base64(&Kek::generate_text().unwrap()).unwrap();
        let first = StoredRing::first(SigningAlg::Es256, &kek, 1_000).unwrap();
        let rotated = first
            .rotated(SigningAlg::Es256, &kek, 2_000, 500, 10_000)
            .unwrap();
        // The new key signs from 2,500; the old one retires at 12,500.
        assert!(!rotated.schedule_moved(2_000, 2_400));
        assert!(rotated.schedule_moved(2_400, 2_500));
        assert!(!rotated.schedule_moved(2_500, 12_000));
        assert!(rotated.schedule_moved(12_000, 13_000));
    }

    #[test]
    fn a_ring_is_usable_only_if_it_opens_can_sign_now_and_claims_no_future() {
        let kek = Kek::from_base64(&Kek::generate_text().unwrap()).unwrap();
        let other = Kek::from_base64(&Kek::generate_text().unwrap()).unwrap();
        let ring = StoredRing::first(SigningAlg::Es256, &kek, 1_000).unwrap();
        assert!(ring.usable(&kek, 2_000).is_ok());
        assert!(
            ring.usable(&other, 2_000).is_err(),
            "sealed under another KEK"
        );
        let mut retired = ring.clone();
        retired.keys[0].retire_at = Some(1_500);
        assert!(retired.usable(&kek, 2_000).is_err(), "no key may sign");
        let mut future = ring.clone();
        future.keys[0].created_at = 2_000 + 86_400_000;
        assert!(future.usable(&kek, 2_000).is_err(), "created in the future");
    }

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
    fn rotation_publishes_first_signs_later_and_retires_the_old_key_after_its_tokens() {
        let kek = Kek::from_base64(&Kek::generate_text().unwrap()).unwrap();
        let first = StoredRing::first(SigningAlg::Es256, &kek, 0).unwrap();
        let old = first.keys[0].kid.clone();
        let ring = first
            .rotated(SigningAlg::Es256, &kek, 1_000, 300_000, 960_000)
            .unwrap();
        let new = ring.keys[1].kid.clone();
        let opened = ring.open(&kek).unwrap();
        let at = |t| ActiveKeys::from_ring(&opened, t).unwrap();
        assert_eq!(at(1_000).signing_kid(), old, "published, not yet signing");
        assert!(at(1_000).key(&new).is_some(), "verifiers already accept it");
        assert_eq!(at(301_000).signing_kid(), new);
        assert!(
            at(301_000 + 959_999).key(&old).is_some(),
            "old tokens verify until they expire"
        );
        assert!(at(301_000 + 960_000).key(&old).is_none(), "then not");
        // A later rotation drops keys already retired.
        let again = ring
            .rotated(SigningAlg::Es256, &kek, 2_000_000, 300_000, 960_000)
            .unwrap();
        assert!(again.keys.iter().all(|k| k.kid != old));
        assert_eq!(again.keys.len(), 2);
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
