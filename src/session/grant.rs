//! Operation-bound step-up grants: a grant is for one exact operation, named by a digest of
//! its description, so a step-up for "pay 10 to bob" cannot pay 1000 to mallory.

use sha2::{Digest, Sha256};

/// Canonical digest of an operation description: sorted keys, no whitespace.
pub fn operation_digest(operation: &serde_json::Map<String, serde_json::Value>) -> String {
    // serde_json maps are sorted by key (no `preserve_order`), so this is canonical.
    let canonical = serde_json::Value::Object(operation.clone()).to_string();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_digests_ignore_key_order_but_not_values() {
        let a: serde_json::Map<_, _> =
            serde_json::from_str(r#"{"action":"payment","amount":"120.00 EUR","payee":"x"}"#)
                .unwrap();
        let b: serde_json::Map<_, _> =
            serde_json::from_str(r#"{"payee":"x","amount":"120.00 EUR","action":"payment"}"#)
                .unwrap();
        let c: serde_json::Map<_, _> =
            serde_json::from_str(r#"{"action":"payment","amount":"1200.00 EUR","payee":"x"}"#)
                .unwrap();
        assert_eq!(operation_digest(&a), operation_digest(&b));
        assert_ne!(operation_digest(&a), operation_digest(&c));
    }
}
