//! The key-encryption key: private signing keys rest in Redis only as AES-256-GCM ciphertext
//! under it, with the `kid` as associated data (a ciphertext cannot be moved to another kid).

use anyhow::{anyhow, bail, Context};
use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::fmt;
use std::path::Path;

/// File name of the KEK inside the keys directory.
pub const KEK_FILE: &str = "kek";

/// 256-bit key-encryption key.
pub struct Kek {
    key: RandomizedNonceKey,
    /// HMAC key for deriving refresh-token successors (HMAC-SHA256(kek, label)), so a retried
    /// refresh gets the very same successor while Redis stores only hashes.
    refresh_key: aws_lc_rs::hmac::Key,
    /// First bytes of SHA-256(key): lets an operator tell two KEKs apart without revealing one.
    fingerprint: String,
}

impl Kek {
    pub fn from_base64(text: &str) -> anyhow::Result<Self> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim().trim_end_matches('='))
            .context("the key-encryption key must be 32 bytes, base64url")?;
        if bytes.len() != 32 {
            bail!(
                "the key-encryption key must be 32 bytes, base64url (got {} bytes)",
                bytes.len()
            );
        }
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&bytes);
        let refresh_subkey = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &bytes),
            b"tessera/refresh-successor/v1",
        );
        Ok(Self {
            refresh_key: aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                refresh_subkey.as_ref(),
            ),
            key: RandomizedNonceKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| anyhow!("cannot build AES-256-GCM key"))?,
            fingerprint: hex::encode(&digest[..4]),
        })
    }

    /// A fresh KEK in its base64url text form.
    pub fn generate_text() -> anyhow::Result<String> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| anyhow!("random generator failed"))?;
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// `TESSERA_KEK` text if given, else `<dir>/kek`; with `create_missing`, a missing file is
    /// created (mode 0600) so a first local start needs no setup.
    pub fn load(
        text: Option<&str>,
        dir: &Path,
        create_missing: bool,
    ) -> anyhow::Result<(Self, bool)> {
        if let Some(text) = text {
            return Ok((Self::from_base64(text).context("TESSERA_KEK")?, false));
        }
        let path = dir.join(KEK_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((
                Self::from_base64(&text).with_context(|| format!("{}", path.display()))?,
                false,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create_missing => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create keys directory {}", dir.display()))?;
                let (text, created) = create_or_read(&path, &Self::generate_text()?)?;
                Ok((
                    Self::from_base64(&text).with_context(|| format!("{}", path.display()))?,
                    created,
                ))
            }
            Err(e) => Err(e).with_context(|| {
                format!(
                    "cannot read the key-encryption key {} (set TESSERA_KEK, or create the file with \
                     `tessera keys generate-kek > {}`)",
                    path.display(),
                    path.display()
                )
            }),
        }
    }

    /// HMAC-SHA256 under the refresh subkey.
    pub fn refresh_mac(&self, data: &[u8]) -> [u8; 32] {
        let tag = aws_lc_rs::hmac::sign(&self.refresh_key, data);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Encrypts `plaintext` bound to `kid`; returns (nonce, ciphertext+tag), both base64url.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> anyhow::Result<(String, String)> {
        let mut buf = plaintext.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| anyhow!("encryption failed"))?;
        let nonce: &[u8; NONCE_LEN] = nonce.as_ref();
        Ok((URL_SAFE_NO_PAD.encode(nonce), URL_SAFE_NO_PAD.encode(buf)))
    }

    pub fn open(&self, kid: &str, nonce: &str, ciphertext: &str) -> anyhow::Result<Vec<u8>> {
        let nonce = URL_SAFE_NO_PAD
            .decode(nonce)
            .context("bad nonce encoding")?;
        let nonce = Nonce::try_assume_unique_for_key(&nonce).map_err(|_| anyhow!("bad nonce"))?;
        let mut buf = URL_SAFE_NO_PAD
            .decode(ciphertext)
            .context("bad ciphertext encoding")?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| {
                anyhow!(
                    "cannot decrypt signing key {kid}: the key ring in Redis was written with a \
                     different key-encryption key than this node's (fingerprint {}). Give every \
                     node the same TESSERA_KEK or keys directory",
                    self.fingerprint
                )
            })?;
        Ok(plain.to_vec())
    }
}

/// Puts `text` at `path` unless a file is already there, and answers what `path` holds.
///
/// Nodes that start together (a compose file, a test suite) race to create the file. The text
/// is written in full to a private temporary file first and then hard-linked into place, which
/// fails if the path exists: nobody ever reads a half-written key, and every racer ends up
/// with the one that won.
fn create_or_read(path: &Path, text: &str) -> anyhow::Result<(String, bool)> {
    let mut suffix = [0u8; 8];
    SystemRandom::new()
        .fill(&mut suffix)
        .map_err(|_| anyhow!("random generator failed"))?;
    let temporary = path.with_extension(format!("new-{}", hex::encode(suffix)));
    write_private(&temporary, text)?;
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok((text.to_owned(), true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let existing = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Ok((existing, false))
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek(fingerprint {})", self.fingerprint)
    }
}

impl crate::session::ports::SuccessorMac for Kek {
    fn mac(&self, data: &[u8]) -> [u8; 32] {
        self.refresh_mac(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_under_the_same_kek_and_kid() {
        let kek = Kek::from_base64(&Kek::generate_text().unwrap()).unwrap();
        let other = Kek::from_base64(&Kek::generate_text().unwrap()).unwrap();
        let (nonce, ct) = kek.seal("kid-1", b"private key").unwrap();
        assert_eq!(kek.open("kid-1", &nonce, &ct).unwrap(), b"private key");
        assert!(kek.open("kid-2", &nonce, &ct).is_err());
        let err = other.open("kid-1", &nonce, &ct).unwrap_err().to_string();
        assert!(err.contains("different key-encryption key"), "{err}");
    }

    #[test]
    fn nodes_starting_together_all_get_the_one_key_file_that_won() {
        let dir = std::env::temp_dir().join(format!("tessera-kek-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let (dir, barrier) = (dir.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let (kek, created) = Kek::load(None, &dir, true).unwrap();
                    (kek.fingerprint().to_owned(), created)
                })
            })
            .collect();
        let results: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
        assert!(results.iter().all(|(f, _)| *f == results[0].0));
        let (again, created) = Kek::load(None, &dir, true).unwrap();
        assert!(!created);
        assert_eq!(again.fingerprint(), results[0].0);
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wrong_length_keks_are_refused_with_a_clear_message() {
        let err = Kek::from_base64("c2hvcnQ").unwrap_err().to_string();
        assert!(err.contains("32 bytes"), "{err}");
    }
}
