//! Redis key layout. Every key of one user shares the `{tag}` hash tag, so each multi-key
//! script touches a single Redis Cluster slot.

use crate::session::{SessionId, UserId};

/// Builds keys under a configurable prefix (default `tsr`; tests use one prefix each).
#[derive(Clone, Debug)]
pub struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// `tsr:s:{tag}:<session id>`: the session record.
    pub fn session(&self, id: &SessionId) -> String {
        // Joined by hand, not `format!`: this runs on every session read.
        let parts = [self.prefix.as_str(), ":s:{", id.tag(), "}:", id.as_str()];
        let mut key = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        parts.iter().for_each(|p| key.push_str(p));
        key
    }

    /// `tsr:s:`: prefix of every session key (what a near cache's tracking listens to).
    pub fn all_sessions_prefix(&self) -> String {
        format!("{}:s:", self.prefix)
    }

    /// `tsr:s:{tag}:`: prefix of every session key of the users with this tag.
    pub fn session_prefix(&self, tag: &str) -> String {
        format!("{}:s:{{{tag}}}:", self.prefix)
    }

    /// `tsr:u:{tag}:<user id>`: sorted set of the user's session ids, scored by expiry (ms).
    pub fn user_index(&self, user: &UserId) -> String {
        format!("{}:u:{{{}}}:{}", self.prefix, user.tag(), user)
    }

    /// `tsr:u:{tag}:`: prefix of the index keys of the users with this tag.
    pub fn user_index_prefix(&self, tag: &str) -> String {
        format!("{}:u:{{{tag}}}:", self.prefix)
    }

    /// `tsr:v:{tag}:<user id>`: the user's credential version.
    pub fn credential_version(&self, user: &UserId) -> String {
        format!("{}:v:{{{}}}:{}", self.prefix, user.tag(), user)
    }

    /// `tsr:v:{tag}:`: prefix of the credential-version keys of the users with this tag.
    pub fn credential_version_prefix(&self, tag: &str) -> String {
        format!("{}:v:{{{tag}}}:", self.prefix)
    }

    /// `tsr:f:{tag}:<user id>`: fingerprint of the user's entry in the users file.
    pub fn fingerprint(&self, user: &UserId) -> String {
        format!("{}:f:{{{}}}:{}", self.prefix, user.tag(), user)
    }

    /// `tsr:tf:{tag}:<user id>` (login) and `tsr:tfs:{tag}:<user id>` (step-up): the user's
    /// wrong second-factor codes (count, last), across tickets and networks; a correct password
    /// never clears them, a changed users-file entry does.
    pub fn totp_failures(&self, user: &UserId, step_up: bool) -> String {
        let kind = if step_up { "tfs" } else { "tf" };
        format!("{}:{kind}:{{{}}}:{}", self.prefix, user.tag(), user)
    }

    /// Password-failure counters of one username: per client network, and over all of them.
    /// Both share a hash tag (derived from the username), so one script updates both.
    pub fn password_failures(&self, username: &str, network: Option<&str>) -> String {
        let tag = short_hash(&username.to_lowercase());
        match network {
            Some(net) => format!("{}:rl:{{{tag}}}:fail:{}", self.prefix, short_hash(net)),
            None => format!("{}:rl:{{{tag}}}:failg", self.prefix),
        }
    }

    /// `tsr:totp:{tag}:<user id>`: the last TOTP step the user spent.
    pub fn totp_step(&self, user: &UserId) -> String {
        format!("{}:totp:{{{}}}:{}", self.prefix, user.tag(), user)
    }

    /// `tsr:g:{tag}:<session id>:<operation digest>`: a single-use step-up grant.
    pub fn grant(&self, id: &SessionId, digest: &str) -> String {
        format!("{}:{digest}", self.session(id).replacen(":s:", ":g:", 1))
    }

    /// Login throttling counters (hashed names: usernames are arbitrary text).
    pub fn counter(&self, kind: &str, name: &str) -> String {
        format!("{}:rl:{kind}:{}", self.prefix, short_hash(name))
    }

    /// A pending MFA ticket, by the hash of its handle.
    pub fn mfa_ticket(&self, handle_hash: &str) -> String {
        format!("{}:mfa:{handle_hash}", self.prefix)
    }

    /// `tsr:users`: the ids the users file held when a node last installed it, so a node that
    /// starts after a user was removed still ends that user's sessions.
    pub fn users_file_members(&self) -> String {
        format!("{}:users", self.prefix)
    }

    /// The global audit stream.
    pub fn audit(&self) -> String {
        format!("{}:audit", self.prefix)
    }

    /// `tsr:audit:{tag}:<user id>`: the user's own audit stream.
    pub fn user_audit(&self, user: &UserId) -> String {
        format!("{}:audit:{{{}}}:{}", self.prefix, user.tag(), user)
    }

    /// `tsr:ob:{tag}`: revocations written by the scripts of the users with this tag, waiting to
    /// be moved to the region's feed.
    pub fn outbox(&self, tag: &str) -> String {
        format!("{}:ob:{{{tag}}}", self.prefix)
    }

    /// The region's revocation feed (a Stream).
    pub fn revocations(&self, region: &str) -> String {
        format!("{}:rev:{region}", self.prefix)
    }

    /// `tsr:pending:<region>`: changes meant for a region that did not answer, kept in this
    /// region's Redis until they are delivered (see `store::pending`).
    pub fn pending(&self, region: &str) -> String {
        format!("{}:pending:{region}", self.prefix)
    }

    /// `tsr:lim:{tag}:<user id>`: in the user's owner region, every live session of the user in
    /// every region (zset: session id -> absolute expiry ms), for the limit across regions.
    pub fn ledger(&self, user: &UserId) -> String {
        format!("{}:lim:{{{}}}:{}", self.prefix, user.tag(), user)
    }

    /// The shared signing key ring.
    pub fn keyring(&self) -> String {
        format!("{}:keyring", self.prefix)
    }
}

fn short_hash(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(s.as_bytes())[..12])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Region;

    /// Redis Cluster hashes only the part between the first `{` and the next `}`.
    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').unwrap();
        let close = key[open..].find('}').unwrap() + open;
        &key[open + 1..close]
    }

    #[test]
    fn all_keys_of_a_user_share_one_hash_tag() {
        let layout = KeyLayout::new("tsr");
        let user = UserId::parse("alice@example.com").unwrap();
        let id = SessionId::generate(&Region::parse("eu").unwrap(), &user);
        let keys = [
            layout.session(&id),
            layout.user_index(&user),
            layout.credential_version(&user),
            layout.fingerprint(&user),
            layout.totp_step(&user),
            layout.totp_failures(&user, false),
            layout.totp_failures(&user, true),
            layout.grant(&id, "abc"),
            layout.ledger(&user),
        ];
        for key in &keys {
            assert_eq!(hash_tag(key), user.tag(), "{key}");
        }
        assert!(layout
            .session(&id)
            .starts_with(&layout.session_prefix(&user.tag())));
        assert_eq!(
            layout.session(&id),
            format!("tsr:s:{{{}}}:{}", user.tag(), id.as_str())
        );
    }
}
