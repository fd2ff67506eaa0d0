//! X25519 key pairs: generated on the host, the private key kept in a file of mode 0600.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use boringtun::x25519;

/// The file under the state directory that holds the private key (base64, like `wg genkey`).
pub const KEY_FILE: &str = "wireguard.key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid key '{0}': must be 32 bytes in base64 (44 characters)")]
    Format(String),
    #[error("{path}: mode {mode:o} lets others read the private key; it must be 0600")]
    Mode { path: PathBuf, mode: u32 },
}

/// A Curve25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

/// A Curve25519 private key. Neither `Debug` nor `Display` show it.
#[derive(Clone)]
pub struct PrivateKey([u8; 32]);

fn decode32(text: &str) -> Result<[u8; 32], KeyError> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|_| KeyError::Format(text.to_string()))?;
    bytes
        .try_into()
        .map_err(|_| KeyError::Format(text.to_string()))
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let t = text.trim();
    if t.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(t.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl PublicKey {
    pub fn from_base64(text: &str) -> Result<PublicKey, KeyError> {
        decode32(text).map(PublicKey)
    }

    /// The UAPI spells keys in hex.
    pub fn from_hex(text: &str) -> Option<PublicKey> {
        decode_hex32(text).map(PublicKey)
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(public {})", self.public())
    }
}

impl PrivateKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> PrivateKey {
        let mut b: [u8; 32] = rand::random();
        // Curve25519 clamping, as `wg genkey` does.
        b[0] &= 248;
        b[31] &= 127;
        b[31] |= 64;
        PrivateKey(b)
    }

    pub fn from_bytes(b: [u8; 32]) -> PrivateKey {
        PrivateKey(b)
    }

    pub fn public(&self) -> PublicKey {
        let secret = x25519::StaticSecret::from(self.0);
        PublicKey(x25519::PublicKey::from(&secret).to_bytes())
    }

    /// For the UAPI `private_key=` line only.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// The key file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(KEY_FILE)
    }

    /// Reads the key in `dir`, or generates one and writes it there. True when generated.
    /// A key file others can read is refused rather than used.
    pub fn load_or_generate(dir: &Path) -> Result<(PrivateKey, bool), KeyError> {
        let path = Self::path(dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mode = std::fs::metadata(&path)
                    .map_err(|source| KeyError::Io {
                        context: format!("reading {}", path.display()),
                        source,
                    })?
                    .permissions()
                    .mode()
                    & 0o777;
                if mode & 0o077 != 0 {
                    return Err(KeyError::Mode { path, mode });
                }
                let b =
                    decode32(&text).map_err(|_| KeyError::Format(path.display().to_string()))?;
                Ok((PrivateKey(b), false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let k = PrivateKey::generate();
                k.save(dir)?;
                Ok((k, true))
            }
            Err(source) => Err(KeyError::Io {
                context: format!("reading {}", path.display()),
                source,
            }),
        }
    }

    /// Writes the key to `dir` (made with mode 0700 if missing): a temporary file created with
    /// mode 0600, then renamed over the old one, so a crash leaves either key, never half of one.
    pub fn save(&self, dir: &Path) -> Result<(), KeyError> {
        let io = |context: String| move |source| KeyError::Io { context, source };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(format!("creating {}", dir.display())))?;
        let path = Self::path(dir);
        let tmp = dir.join(format!("{KEY_FILE}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(format!("creating {}", tmp.display())))?;
        f.write_all(format!("{}\n", B64.encode(self.0)).as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(io(format!("renaming to {}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_matches_the_rfc7748_vector() {
        // RFC 7748 section 6.1, Alice.
        let sk = decode_hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
            .unwrap();
        let pk = PrivateKey(sk).public();
        assert_eq!(
            pk.to_hex(),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        assert_eq!(PublicKey::from_base64(&pk.to_base64()).unwrap(), pk);
        assert_eq!(PublicKey::from_hex(&pk.to_hex()).unwrap(), pk);
    }

    #[test]
    fn key_file_is_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("state");
        let (k1, made) = PrivateKey::load_or_generate(&sub).unwrap();
        assert!(made);
        let mode = std::fs::metadata(PrivateKey::path(&sub))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (k2, made) = PrivateKey::load_or_generate(&sub).unwrap();
        assert!(!made);
        assert_eq!(k1.public(), k2.public());
        std::fs::set_permissions(
            PrivateKey::path(&sub),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(matches!(
            PrivateKey::load_or_generate(&sub),
            Err(KeyError::Mode { .. })
        ));
    }

    #[test]
    fn bad_base64_is_refused() {
        assert!(PublicKey::from_base64("abc").is_err());
        assert!(PublicKey::from_base64(&B64.encode([1u8; 31])).is_err());
    }
}
