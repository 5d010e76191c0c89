//! Parsed identities: a value of these types is valid by construction.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;

/// Why an identity string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("user_id must be 1-128 characters of [A-Za-z0-9._@:-]")]
    UserId,
    #[error("malformed identifier")]
    Malformed,
    #[error("unknown session id version")]
    UnknownVersion,
    #[error("session id names a region this deployment does not know")]
    UnknownRegion,
}

/// A user id: 1–128 characters of `[A-Za-z0-9._@:-]` (DESIGN §3).
///
/// The alphabet keeps ids safe inside Redis keys (no `{`/`}` that would break hash tags) and in
/// logs and headers.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let ok = (1..=128).contains(&raw.len())
            && raw.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b':' | b'-')
            });
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(IdError::UserId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Redis hash tag for every key of this user: 4 hex digits of SHA-256(user id).
    ///
    /// 65,536 values spread users over all 16,384 cluster slots while keeping ids short.
    pub fn tag(&self) -> String {
        self.tag_hex().iter().map(|&b| char::from(b)).collect()
    }

    /// `self.tag() == tag`, without building the string (checked on every session read).
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tag_hex() == tag.as_bytes()
    }

    /// The tag's 4 lowercase hex digits.
    fn tag_hex(&self) -> [u8; 4] {
        let digest = Sha256::digest(self.0.as_bytes());
        let mut hex = [0u8; 4];
        hex::encode_to_slice(&digest[..2], &mut hex).expect("2 bytes are 4 hex digits");
        hex
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A region name: 1–32 characters of `[a-z0-9-]`, so it can sit between `_` separators.
/// Settings deserialize straight into it (an invalid name is refused while reading them).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

impl TryFrom<String> for Region {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Region::parse(&raw).map_err(|_| {
            format!("'{raw}' is not a region name (1-32 characters of a-z, 0-9 and '-')")
        })
    }
}

impl From<Region> for String {
    fn from(r: Region) -> String {
        r.0
    }
}

impl Region {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let ok = (1..=32).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(IdError::Malformed)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const ID_VERSION: &str = "v1";
const RANDOM_BYTES: usize = 16;
/// base64url length of 16 bytes without padding.
const RANDOM_CHARS: usize = 22;
const TAG_CHARS: usize = 4;

/// The public handle of a session: `v1_<region>_<tag>_<128 random bits, base64url>`.
///
/// It appears in listings, JWT `sid` claims and audit records, so it is not a secret: knowing it
/// grants nothing without the matching secret. It routes itself: the region says which Redis
/// holds the session and the tag which cluster slot.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId {
    raw: String,
    region_end: usize,
}

impl SessionId {
    /// A fresh id in `region` for `user`.
    pub fn generate(region: &Region, user: &UserId) -> Self {
        let mut bytes = [0u8; RANDOM_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        let raw = format!(
            "{ID_VERSION}_{}_{}_{}",
            region.as_str(),
            user.tag(),
            URL_SAFE_NO_PAD.encode(bytes)
        );
        Self {
            region_end: ID_VERSION.len() + 1 + region.as_str().len(),
            raw,
        }
    }

    /// Parses an id and checks its region against the configured ones, before any I/O.
    pub fn parse(raw: &str, known_regions: &[Region]) -> Result<Self, IdError> {
        if raw.len() > 3 + 32 + 1 + TAG_CHARS + 1 + RANDOM_CHARS {
            return Err(IdError::Malformed);
        }
        let mut parts = raw.splitn(4, '_');
        let version = parts.next().ok_or(IdError::Malformed)?;
        if version != ID_VERSION {
            return Err(if version.starts_with('v') && parts.clone().count() == 3 {
                IdError::UnknownVersion
            } else {
                IdError::Malformed
            });
        }
        let region = Region::parse(parts.next().ok_or(IdError::Malformed)?)?;
        let tag = parts.next().ok_or(IdError::Malformed)?;
        let random = parts.next().ok_or(IdError::Malformed)?;
        let tag_ok = tag.len() == TAG_CHARS
            && tag
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let random_ok = random.len() == RANDOM_CHARS
            && URL_SAFE_NO_PAD
                .decode(random)
                .is_ok_and(|b| b.len() == RANDOM_BYTES);
        if !tag_ok || !random_ok {
            return Err(IdError::Malformed);
        }
        if !known_regions.contains(&region) {
            return Err(IdError::UnknownRegion);
        }
        Ok(Self {
            region_end: ID_VERSION.len() + 1 + region.as_str().len(),
            raw: raw.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn region(&self) -> &str {
        &self.raw[ID_VERSION.len() + 1..self.region_end]
    }

    /// The user hash tag embedded in the id (checked against the stored user id on load).
    pub fn tag(&self) -> &str {
        &self.raw[self.region_end + 1..self.region_end + 1 + TAG_CHARS]
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.raw)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn has_tag_agrees_with_tag() {
        for name in ["alice", "bob@example.com", "carol"] {
            let user = UserId::parse(name).unwrap();
            assert!(user.has_tag(&user.tag()));
            assert!(!user.has_tag("0000") || user.tag() == "0000");
            assert!(!user.has_tag(&user.tag()[..3]));
            assert!(!user.has_tag(""));
        }
        let (a, b) = (
            UserId::parse("alice").unwrap(),
            UserId::parse("bob").unwrap(),
        );
        assert!(!a.has_tag(&b.tag()));
    }

    fn regions() -> Vec<Region> {
        vec![
            Region::parse("eu").unwrap(),
            Region::parse("us-east").unwrap(),
        ]
    }

    #[test]
    fn generated_ids_parse_back_with_region_and_tag() {
        let user = UserId::parse("alice@example.com").unwrap();
        let id = SessionId::generate(&regions()[1], &user);
        let parsed = SessionId::parse(id.as_str(), &regions()).unwrap();
        assert_eq!(parsed, id);
        assert_eq!(parsed.region(), "us-east");
        assert_eq!(parsed.tag(), user.tag());
        assert!(!id.as_str().contains('.'));
    }

    #[test]
    fn unknown_region_is_refused() {
        let user = UserId::parse("bob").unwrap();
        let id = SessionId::generate(&Region::parse("ap").unwrap(), &user);
        assert_eq!(
            SessionId::parse(id.as_str(), &regions()),
            Err(IdError::UnknownRegion)
        );
    }

    #[test]
    fn unknown_version_is_refused() {
        let user = UserId::parse("bob").unwrap();
        let id = SessionId::generate(&regions()[0], &user);
        let v2 = id.as_str().replacen("v1_", "v2_", 1);
        assert_eq!(
            SessionId::parse(&v2, &regions()),
            Err(IdError::UnknownVersion)
        );
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "v1",
            "v1_eu",
            "v1_eu_abcd",
            "v1_eu_abcd_short",
            "v1_eu_ABCD_AAAAAAAAAAAAAAAAAAAAAA",
            "v1_EU_abcd_AAAAAAAAAAAAAAAAAAAAAA",
            "v1_eu_abcd_AAAAAAAAAAAAAAAAAAAAA*",
            "v1_eu_abcd_AAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(SessionId::parse(bad, &regions()).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_ids_follow_the_documented_alphabet() {
        assert!(UserId::parse("a.b_c@d:e-f9").is_ok());
        assert!(UserId::parse(&"x".repeat(128)).is_ok());
        for bad in ["", "a b", "a{b}", "é", &"x".repeat(129)] {
            assert!(UserId::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in ".{0,80}") {
            let _ = SessionId::parse(&s, &regions());
            let _ = UserId::parse(&s);
        }

        #[test]
        fn every_generated_id_round_trips(user in "[A-Za-z0-9._@:-]{1,128}") {
            let user = UserId::parse(&user).unwrap();
            let id = SessionId::generate(&regions()[0], &user);
            prop_assert_eq!(SessionId::parse(id.as_str(), &regions()).unwrap(), id);
        }
    }
}
