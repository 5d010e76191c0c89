//! The users file: TOML, one `[[users]]` table per user.
//!
//! ```toml
//! [[users]]
//! id = "u-1001"
//! username = "alice"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."   # tessera users hash-password
//! roles = ["admin"]
//! totp_secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"        # optional, base32 (RFC 6238)
//! disabled = false                                        # optional
//! ```
//!
//! Each user's *fingerprint* hashes everything that grants access (password hash, TOTP secret,
//! roles, disabled). When it changes, the user's credential version moves and every existing
//! session and token of that user dies (see `store::users`).

use crate::session::UserId;
use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_secret: Option<String>,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<UserEntry>,
}

/// A user as the login code sees it. `Debug` hides the secrets.
#[derive(Clone)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub password_hash: String,
    pub roles: Vec<String>,
    pub totp_secret: Option<Vec<u8>>,
    pub disabled: bool,
    /// Hash of everything that grants access; a change ends the user's sessions.
    pub fingerprint: String,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("roles", &self.roles)
            .field("totp", &self.totp_secret.is_some())
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// All users, by username (case-insensitive) and by id.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    by_username: HashMap<String, User>,
    ids: HashMap<String, String>,
}

impl Directory {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the users file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in the users file {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: UsersFile = toml::from_str(text).context("not a valid users file")?;
        let mut dir = Directory::default();
        for entry in file.users {
            let user = to_user(entry)?;
            let key = user.username.to_lowercase();
            if dir.ids.contains_key(user.id.as_str()) {
                bail!("user id '{}' appears twice", user.id);
            }
            if dir.by_username.contains_key(&key) {
                bail!("username '{}' appears twice", user.username);
            }
            dir.ids.insert(user.id.as_str().to_owned(), key.clone());
            dir.by_username.insert(key, user);
        }
        Ok(dir)
    }

    pub fn by_username(&self, username: &str) -> Option<&User> {
        self.by_username.get(&username.to_lowercase())
    }

    pub fn by_id(&self, id: &str) -> Option<&User> {
        self.ids.get(id).and_then(|k| self.by_username.get(k))
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.by_username.values()
    }

    pub fn len(&self) -> usize {
        self.by_username.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_username.is_empty()
    }
}

fn to_user(entry: UserEntry) -> anyhow::Result<User> {
    let id = UserId::parse(&entry.id).map_err(|_| {
        anyhow!(
            "user id '{}' must be 1-128 characters of [A-Za-z0-9._@:-]",
            entry.id
        )
    })?;
    if entry.id.starts_with("tessera.") {
        bail!(
            "user id '{}': ids starting with `tessera.` are reserved",
            entry.id
        );
    }
    if entry.username.is_empty() || entry.username.len() > 128 {
        bail!("user '{}': username must be 1-128 characters", entry.id);
    }
    if !entry.password_hash.starts_with("$argon2id$") {
        bail!(
            "user '{}': password_hash must be an argon2id PHC string (make one with `tessera users hash-password`)",
            entry.id
        );
    }
    let totp_secret = match &entry.totp_secret {
        None => None,
        Some(s) => {
            let bytes = totp_rs::Secret::try_from_base32(s.trim())
                .ok()
                .map(|s| s.as_bytes().to_vec())
                .ok_or_else(|| anyhow!("user '{}': totp_secret is not base32", entry.id))?;
            if bytes.len() < 16 {
                bail!("user '{}': totp_secret must be at least 128 bits", entry.id);
            }
            Some(bytes)
        }
    };
    let mut roles = entry.roles.clone();
    roles.sort();
    let mut h = Sha256::new();
    for part in [
        entry.password_hash.as_str(),
        entry.totp_secret.as_deref().unwrap_or(""),
        &roles.join(" "),
        if entry.disabled {
            "disabled"
        } else {
            "enabled"
        },
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    Ok(User {
        id,
        username: entry.username,
        password_hash: entry.password_hash,
        roles,
        totp_secret,
        disabled: entry.disabled,
        fingerprint: hex::encode(&h.finalize()[..12]),
    })
}

/// The users file currently installed, shared by login (which reads it) and the session
/// service (which asks it, on every use of a session, whether the user is still let in).
#[derive(Clone, Default)]
pub struct SharedDirectory(Arc<RwLock<Arc<Directory>>>);

impl SharedDirectory {
    pub fn get(&self) -> Arc<Directory> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs `directory`; returns the one it replaces.
    pub fn replace(&self, directory: Arc<Directory>) -> Arc<Directory> {
        std::mem::replace(
            &mut *self.0.write().unwrap_or_else(|e| e.into_inner()),
            directory,
        )
    }
}

impl crate::session::ports::UserGate for SharedDirectory {
    /// A user the file marks disabled is refused whatever Redis remembers (a lost fingerprint,
    /// a restart without persistence), and so is a users-file session whose user left the file
    /// (even if Redis forgot who was in it); users from elsewhere are not the file's to judge.
    fn admits(&self, user: &str, from_users_file: bool) -> bool {
        match self.get().by_id(user) {
            Some(entry) => !entry.disabled,
            None => !from_users_file,
        }
    }
}

/// Appends a user to the file (creating it), refusing duplicates.
pub fn append(path: &Path, entry: UserEntry) -> anyhow::Result<()> {
    let existing = if path.exists() {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    } else {
        String::new()
    };
    let mut candidate = existing.clone();
    let block = toml::to_string(&UsersFile { users: vec![entry] })?;
    if !candidate.is_empty() && !candidate.ends_with('\n') {
        candidate.push('\n');
    }
    candidate.push('\n');
    candidate.push_str(&block);
    Directory::parse(&candidate)?;
    write_private_atomically(path, &candidate)
}

/// The users file holds password hashes and TOTP secrets: written with mode 0600 to a temporary
/// file beside it, then renamed over it, so a reload never reads half a file and nobody else on
/// the host can read it.
fn write_private_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$5oQ7VTC2MmTGjbHnLWBlfRG7EV58rp/RWnxXP8Mt5Xk";

    fn file(extra: &str) -> String {
        format!("[[users]]\nid = \"u1\"\nusername = \"Alice\"\npassword_hash = \"{HASH}\"\nroles = [\"admin\"]\n{extra}")
    }

    #[test]
    fn parses_users_and_finds_them_case_insensitively() {
        let dir = Directory::parse(&file("")).unwrap();
        let alice = dir.by_username("alice").unwrap();
        assert_eq!(alice.id.as_str(), "u1");
        assert_eq!(alice.roles, vec!["admin"]);
        assert!(dir.by_id("u1").is_some());
        assert!(!format!("{alice:?}").contains("argon2"));
    }

    #[test]
    fn the_fingerprint_moves_with_anything_that_grants_access() {
        let base = Directory::parse(&file(""))
            .unwrap()
            .by_id("u1")
            .unwrap()
            .fingerprint
            .clone();
        for extra in [
            "disabled = true",
            "totp_secret = \"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\"",
        ] {
            let other = Directory::parse(&file(extra))
                .unwrap()
                .by_id("u1")
                .unwrap()
                .fingerprint
                .clone();
            assert_ne!(base, other, "{extra}");
        }
        let roles = file("").replace("[\"admin\"]", "[]");
        assert_ne!(
            base,
            Directory::parse(&roles)
                .unwrap()
                .by_id("u1")
                .unwrap()
                .fingerprint
        );
        let same = Directory::parse(&file(""))
            .unwrap()
            .by_id("u1")
            .unwrap()
            .fingerprint
            .clone();
        assert_eq!(base, same);
    }

    #[test]
    #[cfg(unix)]
    fn appending_writes_a_file_only_its_owner_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tessera-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.toml");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let entry = toml::from_str::<UsersFile>(&file(""))
            .unwrap()
            .users
            .remove(0);
        append(&path, entry).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(Directory::load(&path)
            .unwrap()
            .by_username("alice")
            .is_some());
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        for (text, needle) in [
            (file("").replace("$argon2id$", "$2b$"), "argon2id"),
            (file("totp_secret = \"!!\""), "base32"),
            (file("totp_secret = \"JBSWY3DP\""), "128 bits"),
            (format!("{}\n{}", file(""), file("")), "twice"),
            (file("colour = 1"), "valid users file"),
        ] {
            let err = format!("{:#}", Directory::parse(&text).unwrap_err());
            assert!(err.contains(needle), "{err}");
        }
    }
}
