use latchkey_domain::{ports::SuccessorDerivation, RefreshTokenSecret};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::{Digest, Sha256};

const BLOCK: usize = 64;

/// Successor refresh tokens as HMAC-SHA256(key, presented token) (RFC 2104).
///
/// Without the key the successor of a token cannot be computed, and with it nothing is gained
/// that the key's owner (the server) does not already have.
pub struct HmacSuccessors {
    key: SecretSlice<u8>,
}

impl HmacSuccessors {
    /// `key` should be a server secret; the composition root derives it from the JWT secret
    /// with a label of its own, so it is never the signing key itself.
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: SecretSlice::from(key.to_vec()),
        }
    }

    /// Derives a key for another purpose from a master secret.
    pub fn derive_key(master: &[u8], label: &str) -> [u8; 32] {
        hmac_sha256(master, label.as_bytes())
    }
}

/// Written out (RFC 2104 is a dozen lines) because the `hmac` crate in the lock file is built on
/// a newer `digest` than the `sha2` this workspace uses; the RFC 4231 vectors below pin it.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|k| k ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

impl SuccessorDerivation for HmacSuccessors {
    fn successor(&self, presented: &RefreshTokenSecret) -> RefreshTokenSecret {
        RefreshTokenSecret::from_random_bytes(hmac_sha256(
            self.key.expose_secret(),
            presented.expose().as_bytes(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_test_cases() {
        // Test case 2: a short key.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_token_always_has_the_same_successor_and_it_depends_on_the_key() {
        let token = RefreshTokenSecret::from_presented("presented".into());
        let ours = HmacSuccessors::new(b"key one");
        assert_eq!(
            ours.successor(&token).expose(),
            ours.successor(&token).expose()
        );
        assert_ne!(
            ours.successor(&token).expose(),
            HmacSuccessors::new(b"key two").successor(&token).expose()
        );
        let other = RefreshTokenSecret::from_presented("other".into());
        assert_ne!(
            ours.successor(&token).expose(),
            ours.successor(&other).expose()
        );
        assert_eq!(ours.successor(&token).expose().len(), 43, "256 bits");
    }
}
