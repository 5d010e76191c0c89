//! Public test vectors (C2SP Wycheproof, Apache-2.0, copied unchanged into tests/data/wycheproof)
//! run through Tessera's own JWS validation and the signature primitive it relies on.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use tessera::token::{verify_jws, KeyLookup, VerifyingKey};

fn load(name: &str) -> Value {
    let path = format!(
        "{}/tests/data/wycheproof/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

struct OneKey(String, VerifyingKey);

impl KeyLookup for OneKey {
    fn key(&self, kid: &str) -> Option<&VerifyingKey> {
        (kid == self.0).then_some(&self.1)
    }
}

/// For a compact ES256 JWS whose signature has a high S: the same JWS with (r, n - s).
fn low_s_twin(jws: &str) -> Option<String> {
    let (signed, sig) = jws.rsplit_once('.')?;
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(signed.split('.').next()?).ok()?).ok()?;
    if header["alg"] != "ES256" {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(sig).ok()?;
    if !tessera::token::keys::is_high_s(&raw) {
        return None;
    }
    let low = p256::ecdsa::Signature::from_slice(&raw).ok()?.normalize_s();
    Some(format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(low.to_bytes())
    ))
}

#[test]
fn jws_vectors_for_p256_and_ed25519_keys() {
    let doc = load("json_web_signature_test.json");
    let (mut valid, mut invalid) = (0, 0);
    for group in doc["testGroups"].as_array().unwrap() {
        let key = group.get("public").unwrap_or(&group["private"]);
        let supported = matches!(
            (key["kty"].as_str(), key["crv"].as_str()),
            (Some("EC"), Some("P-256")) | (Some("OKP"), Some("Ed25519"))
        );
        if !supported {
            continue;
        }
        let imported = VerifyingKey::from_jwk(key).ok();
        for test in group["tests"].as_array().unwrap() {
            let id = test["tcId"].as_i64().unwrap();
            let accepted = match (&imported, test["jws"].as_str()) {
                (Some(_), Some(jws)) => {
                    let lookup = OneKey(
                        key["kid"].as_str().unwrap_or("").to_owned(),
                        VerifyingKey::from_jwk(key).unwrap(),
                    );
                    verify_jws(jws, &lookup, None).is_ok()
                }
                // JSON serialization, or a key Tessera refuses to import (wrong `use`/`key_ops`).
                _ => false,
            };
            let twin = test["jws"].as_str().and_then(low_s_twin);
            match test["result"].as_str().unwrap() {
                // Tessera's one deviation: a high-S ECDSA signature (the malleable twin of a
                // valid one) is refused, and its low-S form must verify instead.
                "valid" if twin.is_some() => {
                    assert!(!accepted, "tcId {id}: high-S must be refused");
                    let lookup = OneKey(
                        key["kid"].as_str().unwrap_or("").to_owned(),
                        VerifyingKey::from_jwk(key).unwrap(),
                    );
                    let twin = twin.unwrap();
                    assert!(
                        verify_jws(&twin, &lookup, None).is_ok(),
                        "tcId {id}: the low-S twin must verify"
                    );
                    valid += 1;
                }
                "valid" => {
                    assert!(accepted, "tcId {id} ({}) must verify", test["comment"]);
                    valid += 1;
                }
                "invalid" => {
                    assert!(!accepted, "tcId {id} ({}) must be refused", test["comment"]);
                    invalid += 1;
                }
                _ => {}
            }
        }
    }
    assert!(
        valid >= 2 && invalid >= 35,
        "ran {valid} valid and {invalid} invalid vectors"
    );
}

/// A P-256 public key from the vector's uncompressed point, as a JWK.
fn p256_jwk(uncompressed_hex: &str) -> Option<Value> {
    let bytes = hex::decode(uncompressed_hex).ok()?;
    if bytes.len() != 65 || bytes[0] != 4 {
        return None;
    }
    Some(serde_json::json!({
        "kty": "EC", "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&bytes[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&bytes[33..]),
    }))
}

fn check_raw(key: &VerifyingKey, msg_hex: &str, sig_hex: &str) -> bool {
    let msg = hex::decode(msg_hex).unwrap();
    let sig = URL_SAFE_NO_PAD.encode(hex::decode(sig_hex).unwrap());
    jsonwebtoken::crypto::verify(&sig, &msg, &key.key, key.alg.jwt_algorithm()).unwrap_or(false)
}

/// Runs every raw-signature vector of `file` whose group key `key_of` can import: `valid` must
/// verify, `invalid` must fail. Returns how many ran.
fn run_signature_vectors(file: &str, key_of: impl Fn(&Value) -> Option<Value>) -> usize {
    let doc = load(file);
    let mut ran = 0;
    for group in doc["testGroups"].as_array().unwrap() {
        let Some(jwk) = key_of(&group["publicKey"]) else {
            continue;
        };
        let Ok(key) = VerifyingKey::from_jwk(&jwk) else {
            // A key Tessera refuses to import refuses every signature under it.
            continue;
        };
        for test in group["tests"].as_array().unwrap() {
            let msg = test["msg"].as_str().unwrap();
            let ok = check_raw(&key, msg, test["sig"].as_str().unwrap());
            match test["result"].as_str().unwrap() {
                "valid" => assert!(ok, "{file} tcId {} must verify", test["tcId"]),
                "invalid" => assert!(
                    !ok,
                    "{file} tcId {} ({}) must fail",
                    test["tcId"], test["comment"]
                ),
                _ => {}
            }
            ran += 1;
        }
    }
    ran
}

#[test]
fn ecdsa_p256_p1363_vectors_through_the_es256_primitive() {
    let ran = run_signature_vectors("ecdsa_secp256r1_sha256_p1363_test.json", |key| {
        p256_jwk(key["uncompressed"].as_str()?)
    });
    assert!(ran > 200, "ran {ran}");
}

#[test]
fn ed25519_vectors_through_the_eddsa_primitive() {
    let ran = run_signature_vectors("ed25519_test.json", |key| {
        let pk = hex::decode(key["pk"].as_str()?).ok()?;
        Some(serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&pk)}))
    });
    assert!(ran > 100, "ran {ran}");
}

/// JWK-set vectors through the verifier's JWKS import and Tessera's JWS check: every `invalid`
/// case is refused. `valid` cases with keys Tessera does not accept at all (HMAC, RSA) cannot
/// verify by design and are counted, not asserted.
#[test]
fn jwk_set_vectors_through_the_verifiers_jwks_import() {
    let doc = load("json_web_key_test.json");
    let (mut refused, mut unsupported_valid, mut accepted_valid) = (0, 0, 0);
    for group in doc["testGroups"].as_array().unwrap() {
        let jwks = group.get("public").unwrap_or(&group["private"]);
        let keys = tessera::verify::Keys::from_jwks(jwks);
        for test in group["tests"].as_array().unwrap() {
            let id = test["tcId"].as_i64().unwrap();
            let accepted = test["jws"]
                .as_str()
                .is_some_and(|jws| verify_jws(jws, &keys, None).is_ok());
            match test["result"].as_str().unwrap() {
                "invalid" => {
                    assert!(!accepted, "tcId {id} ({}) must be refused", test["comment"]);
                    refused += 1;
                }
                "valid" if keys.is_empty() => unsupported_valid += 1,
                "valid" => {
                    assert!(accepted, "tcId {id} must verify");
                    accepted_valid += 1;
                }
                _ => {}
            }
        }
    }
    assert!(refused >= 20, "ran {refused} invalid vectors");
    assert_eq!(
        accepted_valid + unsupported_valid,
        5,
        "the file's valid cases are all counted"
    );
}
