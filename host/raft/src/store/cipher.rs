//! Encryption at rest of log entries and snapshot data (SwarmKit's raft DEK): ChaCha20-Poly1305
//! with a random 96-bit nonce per record, stored in front of the ciphertext. What is not secret
//! (log ids, the vote, snapshot metadata) stays readable and is authenticated as associated data.

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::KeyInit;
use chacha20poly1305::Nonce;
use chacha20poly1305::aead::Aead;
use chacha20poly1305::aead::Payload;

/// Bytes of a key.
pub(crate) const KEY_LEN: usize = 32;
/// Bytes of the nonce stored in front of every ciphertext.
pub(crate) const NONCE_LEN: usize = 12;

/// Seals and opens records with one key. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Sealer {
    aead: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        Self {
            aead: ChaCha20Poly1305::new(key.into()),
        }
    }

    /// `nonce || ciphertext+tag` of `plain`, bound to `aad`.
    pub(crate) fn seal(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&nonce);
        // Encryption of an in-memory buffer only fails for inputs beyond ChaCha20's 256 GiB.
        match self
            .aead
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
        {
            Ok(ciphertext) => out.extend_from_slice(&ciphertext),
            Err(_) => out.clear(),
        }
        out
    }

    /// The plaintext of a sealed record; `None` when the key is wrong or the bytes were changed.
    pub(crate) fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN)?;
        self.aead
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_wrong_key() {
        let sealer = Sealer::new(&[7; KEY_LEN]);
        let sealed = sealer.seal(b"secret command", b"header");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            sealer.open(&sealed, b"header").as_deref(),
            Some(&b"secret command"[..])
        );
        assert!(sealer.open(&sealed, b"other").is_none());
        assert!(
            Sealer::new(&[8; KEY_LEN])
                .open(&sealed, b"header")
                .is_none()
        );
        assert!(sealer.open(&sealed[..5], b"header").is_none());
        assert_ne!(
            sealer.seal(b"x", b""),
            sealer.seal(b"x", b""),
            "fresh nonces"
        );
    }
}
