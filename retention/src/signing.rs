//! The store's ed25519 key: created at init, its secret half kept in `key.secret` (mode 0600),
//! its public half in `public-key.txt` for the compliance officer to keep elsewhere.

use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};

use crate::error::{Error, Result};
use crate::fsutil;

pub const SECRET_FILE: &str = "key.secret";
pub const PUBLIC_FILE: &str = "public-key.txt";

/// The signing key of one store.
pub struct Keys {
    signing: SigningKey,
}

impl Keys {
    /// Creates a fresh key and writes both halves into `dir`.
    pub fn create(dir: &Path) -> Result<Keys> {
        let secret: [u8; 32] = rand::random();
        let keys = Keys {
            signing: SigningKey::from_bytes(&secret),
        };
        fsutil::write_atomic_mode(
            &dir.join(SECRET_FILE),
            hex::encode(secret).as_bytes(),
            0o600,
        )?;
        fsutil::write_atomic(
            &dir.join(PUBLIC_FILE),
            format!("{}\n", keys.public_hex()).as_bytes(),
        )?;
        Ok(keys)
    }

    /// Loads the key of the store in `dir`.
    pub fn load(dir: &Path) -> Result<Keys> {
        let path = dir.join(SECRET_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let bytes = hex::decode(text.trim()).map_err(|e| Error::Key {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let secret: [u8; 32] = bytes.try_into().map_err(|_| Error::Key {
            path: path.clone(),
            reason: "a secret key has 32 bytes".into(),
        })?;
        Ok(Keys {
            signing: SigningKey::from_bytes(&secret),
        })
    }

    pub fn sign_hex(&self, message: &[u8]) -> String {
        hex::encode(self.signing.sign(message).to_bytes())
    }

    pub fn public(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.public().to_bytes())
    }
}

/// Reads a public key written as hex (the store's `public-key.txt` or the officer's copy).
pub fn read_public(path: &Path) -> Result<VerifyingKey> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_public(text.trim()).map_err(|reason| Error::Key {
        path: path.to_owned(),
        reason,
    })
}

pub fn parse_public(hex_text: &str) -> Result<VerifyingKey, String> {
    let bytes = hex::decode(hex_text).map_err(|e| e.to_string())?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "a public key has 32 bytes".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| e.to_string())
}

/// True when `sig_hex` is a valid signature of `message` by `key`.
pub fn verify_hex(key: &VerifyingKey, message: &[u8], sig_hex: &str) -> bool {
    let Ok(bytes) = hex::decode(sig_hex) else {
        return false;
    };
    let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else {
        return false;
    };
    key.verify(message, &ed25519_dalek::Signature::from_bytes(&bytes))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_message_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::create(dir.path()).unwrap();
        let sig = keys.sign_hex(b"head 7");
        let public = read_public(&dir.path().join(PUBLIC_FILE)).unwrap();
        assert!(verify_hex(&public, b"head 7", &sig));
        assert!(!verify_hex(&public, b"head 8", &sig));
        let other = Keys::create(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(!verify_hex(&other.public(), b"head 7", &sig));
        assert_eq!(
            Keys::load(dir.path()).unwrap().public_hex(),
            keys.public_hex()
        );
    }
}
