//! Encryption of sensitive fields at rest: XChaCha20-Poly1305 under `ENCRYPTION_KEY`.
//!
//! A stored value is `v1:<key id>:<base64url(nonce ‖ ciphertext)>`. The key id (the first 8 hex digits
//! of the key's SHA-256) says which key sealed it, so keys listed in `ENCRYPTION_KEYS_PREVIOUS` still
//! open old values after a rotation. Every value is bound to its place by associated data (table,
//! column, row), so a ciphertext copied into another row or column does not open. A database dump
//! alone reveals nothing sealed here.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use sha2::{Digest as _, Sha256};

use crate::server::config::SecretKey;

const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("not a sealed value")]
    Format,
    #[error("sealed under a key that is not configured (key id {0})")]
    UnknownKey(String),
    #[error("the value was altered or belongs elsewhere")]
    Tampered,
}

struct SealKey {
    id: String,
    aead: XChaCha20Poly1305,
}

pub struct SecretBox {
    current: SealKey,
    previous: Vec<SealKey>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("current_key_id", &self.current.id)
            .field("previous_keys", &self.previous.len())
            .finish()
    }
}

fn seal_key(key: &SecretKey) -> SealKey {
    let bytes = key.expose();
    let digest = Sha256::digest(bytes);
    // The configured key is at least 32 bytes; the cipher takes exactly 32, so use a hash of it.
    let material = Sha256::digest([b"nestegg-secret-box\0".as_slice(), bytes].concat());
    SealKey {
        id: hex::encode(&digest[..4]),
        aead: XChaCha20Poly1305::new(Key::from_slice(&material)),
    }
}

impl SecretBox {
    pub fn new(current: &SecretKey, previous: &[SecretKey]) -> Self {
        SecretBox {
            current: seal_key(current),
            previous: previous.iter().map(seal_key).collect(),
        }
    }

    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plaintext`, bound to `context` (e.g. "outbox_emails.body_text:<message id>").
    pub fn seal(&self, plaintext: &str, context: &str) -> String {
        use rand::RngCore as _;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: context.as_bytes(),
        };
        // Encryption only fails for messages beyond ~256 GiB; a field is never near that.
        let ciphertext = self
            .current
            .aead
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        format!(
            "{VERSION}:{}:{}",
            self.current.id,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(blob)
        )
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<String, SealError> {
        let mut parts = sealed.splitn(3, ':');
        let (Some(VERSION), Some(key_id), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SealError::Format);
        };
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
            .ok_or_else(|| SealError::UnknownKey(key_id.to_owned()))?;
        let blob = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| SealError::Format)?;
        if blob.len() < NONCE_LEN + 16 {
            return Err(SealError::Format);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: context.as_bytes(),
        };
        let plaintext = key
            .aead
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| SealError::Tampered)?;
        String::from_utf8(plaintext).map_err(|_| SealError::Tampered)
    }

    /// Whether `sealed` is under an older key (to be re-sealed by a rotation).
    pub fn needs_rotation(&self, sealed: &str) -> bool {
        sealed
            .split(':')
            .nth(1)
            .is_some_and(|id| id != self.current.id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding_to_context() {
        let key = SecretKey::generate();
        let sb = SecretBox::new(&key, &[]);
        let sealed = sb.seal("https://example.org/reset?token=abc", "outbox:1:text");
        assert!(sealed.starts_with(&format!("v1:{}:", sb.current_key_id())));
        assert!(!sealed.contains("token"));
        assert_eq!(
            sb.open(&sealed, "outbox:1:text").unwrap(),
            "https://example.org/reset?token=abc"
        );
        assert_eq!(
            sb.open(&sealed, "outbox:2:text"),
            Err(SealError::Tampered),
            "moved to another row"
        );
        assert_ne!(
            sealed,
            sb.seal("https://example.org/reset?token=abc", "outbox:1:text"),
            "fresh nonce"
        );
    }

    #[test]
    fn wrong_key_and_tampering_are_refused() {
        let sb = SecretBox::new(&SecretKey::generate(), &[]);
        let other = SecretBox::new(&SecretKey::generate(), &[]);
        let sealed = sb.seal("secret", "ctx");
        assert!(matches!(
            other.open(&sealed, "ctx"),
            Err(SealError::UnknownKey(_))
        ));
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            sb.open(&String::from_utf8(bytes).unwrap(), "ctx"),
            Err(SealError::Tampered)
        );
        assert_eq!(sb.open("plain text", "ctx"), Err(SealError::Format));
    }

    #[test]
    fn previous_keys_still_open_and_are_flagged_for_rotation() {
        let old = SecretKey::generate();
        let new = SecretKey::generate();
        let before = SecretBox::new(&old, &[]);
        let sealed = before.seal("secret", "ctx");
        let after = SecretBox::new(&new, &[old]);
        assert_eq!(after.open(&sealed, "ctx").unwrap(), "secret");
        assert!(after.needs_rotation(&sealed));
        assert!(!after.needs_rotation(&after.seal("secret", "ctx")));
    }
}
