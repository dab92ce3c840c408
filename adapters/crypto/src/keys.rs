//! The keys access tokens are signed with: a shared HS256 secret, or an Ed25519 or RSA key pair
//! whose public halves are published as a JWK Set (RFC 7517), so that other services can verify
//! tokens without being able to mint them.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents};
use rsa::{
    pkcs1::DecodeRsaPublicKey, pkcs8::DecodePublicKey, pkcs8::EncodePrivateKey,
    traits::PublicKeyParts,
};
use secrecy::SecretString;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fmt;

/// How access tokens are signed (`JWT_ALGORITHM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and the shared `JWT_SECRET`: whoever can verify can also sign.
    Hs256,
    /// Ed25519 (RFC 8037).
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256, for verifiers that know no Ed25519.
    Rs256,
}

impl JwtAlgorithm {
    pub const ALL: [Self; 3] = [Self::Hs256, Self::EdDsa, Self::Rs256];

    /// The name in a JWT header (`alg`) and in a JWK.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
        }
    }

    /// The header name, in any letter case.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|algorithm| algorithm.name().eq_ignore_ascii_case(name.trim()))
    }

    pub(crate) fn jsonwebtoken(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::EdDsa => Algorithm::EdDSA,
            Self::Rs256 => Algorithm::RS256,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a PEM file cannot be used as a token key. The variable naming the file is added by the
/// caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("is not a PEM file")]
    NotPem,
    #[error(
        "holds a PEM block of type \"{0}\"; expected \"PRIVATE KEY\" (PKCS#8), \
         \"PUBLIC KEY\" or, for RSA, \"RSA PRIVATE KEY\" or \"RSA PUBLIC KEY\""
    )]
    UnexpectedBlock(String),
    #[error("holds a public key where a private key is needed")]
    PublicOnly,
    #[error(
        "is neither an Ed25519 key nor an RSA key of 2048 to 4096 bits with an exponent of at \
         least 65537"
    )]
    Unsupported,
    #[error("holds {0} PEM blocks; put one key in each file")]
    SeveralKeys(usize),
    #[error("holds an {found} key, but JWT_ALGORITHM is {expected}")]
    WrongAlgorithm {
        expected: JwtAlgorithm,
        found: JwtAlgorithm,
    },
    #[error("HS256 signs with the shared JWT_SECRET, not with a key pair")]
    Symmetric,
}

/// The public half of a token key: what the JWK Set publishes and what checks signatures.
#[derive(Clone)]
pub struct VerifyingKey {
    algorithm: JwtAlgorithm,
    kid: String,
    jwk: Value,
    decoding: DecodingKey,
}

/// RSA keys shorter than this are refused (RFC 7518 §3.3); ring refuses to sign with them too.
const MIN_RSA_BITS: usize = 2048;
/// ring's and the rsa crate's upper bound for RSA keys.
const MAX_RSA_BITS: usize = 4096;

/// What every Ed25519 SubjectPublicKeyInfo (RFC 8410 §4) starts with; the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// What every version 1 Ed25519 PKCS#8 document (RFC 8410 §7) starts with; the 32-byte seed
/// follows. Version 1 is what OpenSSL writes and every library reads.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

impl VerifyingKey {
    fn ed25519(public_key: &[u8]) -> Result<Self, KeyError> {
        if public_key.len() != 32 {
            return Err(KeyError::Unsupported);
        }
        let x = URL_SAFE_NO_PAD.encode(public_key);
        // RFC 7638: the required members, in lexicographic order, without whitespace.
        let kid = thumbprint(&format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#));
        let decoding = DecodingKey::from_ed_components(&x).map_err(|_| KeyError::Unsupported)?;
        Ok(Self {
            algorithm: JwtAlgorithm::EdDsa,
            jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "x": x,
                "use": "sig", "alg": "EdDSA", "kid": kid,
            }),
            kid,
            decoding,
        })
    }

    /// `modulus` and `exponent` big-endian without leading zeros (as JWK wants them).
    fn rsa(modulus: &[u8], exponent: &[u8]) -> Result<Self, KeyError> {
        let bits = modulus.len() * 8 - modulus.first().map_or(8, |b| b.leading_zeros() as usize);
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(KeyError::Unsupported);
        }
        let n = URL_SAFE_NO_PAD.encode(modulus);
        let e = URL_SAFE_NO_PAD.encode(exponent);
        let kid = thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#));
        Ok(Self {
            algorithm: JwtAlgorithm::Rs256,
            decoding: DecodingKey::from_rsa_raw_components(modulus, exponent),
            jwk: json!({
                "kty": "RSA", "n": n, "e": e,
                "use": "sig", "alg": "RS256", "kid": kid,
            }),
            kid,
        })
    }

    /// A public key (`PUBLIC KEY`, or `RSA PUBLIC KEY`) or the public half of a private key,
    /// from PEM text: the keys that signed tokens still in use (`JWT_PREVIOUS_KEY_FILES`).
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let block = single_block(text)?;
        let der = block.contents();
        match block.tag() {
            "PUBLIC KEY" => {
                if der.len() == ED25519_SPKI_PREFIX.len() + 32
                    && der.starts_with(&ED25519_SPKI_PREFIX)
                {
                    return Self::ed25519(&der[ED25519_SPKI_PREFIX.len()..]);
                }
                let key = rsa::RsaPublicKey::from_public_key_der(der)
                    .map_err(|_| KeyError::Unsupported)?;
                Self::rsa(&key.n().to_bytes_be(), &key.e().to_bytes_be())
            }
            "RSA PUBLIC KEY" => {
                let key =
                    rsa::RsaPublicKey::from_pkcs1_der(der).map_err(|_| KeyError::Unsupported)?;
                Self::rsa(&key.n().to_bytes_be(), &key.e().to_bytes_be())
            }
            "PRIVATE KEY" | "RSA PRIVATE KEY" => Ok(SigningKey::from_pem(text)?.verifying),
            other => Err(KeyError::UnexpectedBlock(other.to_owned())),
        }
    }

    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    /// The RFC 7638 thumbprint: the same on every instance that loads this key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK (RFC 7517 §4), with `kid`, `alg` and `use`.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish()
    }
}

/// A private key that signs access tokens, with its public half.
#[derive(Clone)]
pub struct SigningKey {
    encoding: EncodingKey,
    verifying: VerifyingKey,
}

impl SigningKey {
    /// An Ed25519 or RSA private key from PEM text: PKCS#8 (`PRIVATE KEY`, as
    /// `latchkey keygen` and `openssl genpkey` write it) or PKCS#1 (`RSA PRIVATE KEY`).
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let block = single_block(text)?;
        let der = block.contents();
        let rsa = |pair: RsaKeyPair| -> Result<Self, KeyError> {
            let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
            Ok(Self {
                encoding: EncodingKey::from_rsa_pem(text.as_bytes())
                    .map_err(|_| KeyError::Unsupported)?,
                verifying: VerifyingKey::rsa(&public.n, &public.e)?,
            })
        };
        match block.tag() {
            "PRIVATE KEY" => {
                if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                    return Ok(Self {
                        encoding: EncodingKey::from_ed_der(der),
                        verifying: VerifyingKey::ed25519(pair.public_key().as_ref())?,
                    });
                }
                rsa(RsaKeyPair::from_pkcs8(der).map_err(|_| KeyError::Unsupported)?)
            }
            "RSA PRIVATE KEY" => rsa(RsaKeyPair::from_der(der).map_err(|_| KeyError::Unsupported)?),
            "PUBLIC KEY" | "RSA PUBLIC KEY" => Err(KeyError::PublicOnly),
            other => Err(KeyError::UnexpectedBlock(other.to_owned())),
        }
    }

    /// Like [`SigningKey::from_pem`], refusing a key of another algorithm than `expected`.
    pub fn from_pem_for(text: &str, expected: JwtAlgorithm) -> Result<Self, KeyError> {
        if expected == JwtAlgorithm::Hs256 {
            return Err(KeyError::Symmetric);
        }
        let key = Self::from_pem(text)?;
        let found = key.verifying.algorithm;
        if found != expected {
            return Err(KeyError::WrongAlgorithm { expected, found });
        }
        Ok(key)
    }

    /// A new private key as PKCS#8 PEM (RSA keys have 3072 bits: NIST's choice past 2030).
    pub fn generate_pem(algorithm: JwtAlgorithm) -> Result<SecretString, KeyError> {
        match algorithm {
            JwtAlgorithm::Hs256 => Err(KeyError::Symmetric),
            JwtAlgorithm::EdDsa => {
                let mut document = ED25519_PKCS8_V1_PREFIX.to_vec();
                document.extend_from_slice(&rand::random::<[u8; 32]>());
                let text = pem::encode_config(
                    &pem::Pem::new("PRIVATE KEY", document),
                    pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
                );
                Ok(SecretString::from(text))
            }
            JwtAlgorithm::Rs256 => {
                let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, GENERATED_RSA_BITS)
                    .map_err(|_| KeyError::Unsupported)?;
                let text = key
                    .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
                    .map_err(|_| KeyError::Unsupported)?;
                Ok(SecretString::from(text.as_str()))
            }
        }
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

const GENERATED_RSA_BITS: usize = 3072;

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The private half never leaves.
        f.debug_struct("SigningKey")
            .field("verifying", &self.verifying)
            .finish_non_exhaustive()
    }
}

/// The one PEM block of a key file: a second key in it would be ignored without a word.
fn single_block(text: &str) -> Result<pem::Pem, KeyError> {
    let mut blocks = pem::parse_many(text).map_err(|_| KeyError::NotPem)?;
    match blocks.len() {
        0 => Err(KeyError::NotPem),
        1 => Ok(blocks.remove(0)),
        n => Err(KeyError::SeveralKeys(n)),
    }
}

fn thumbprint(canonical_jwk: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical_jwk.as_bytes()))
}

/// The JWK Set of `keys` (RFC 7517 §5): what `/.well-known/jwks.json` serves.
pub fn jwk_set<'a>(keys: impl IntoIterator<Item = &'a VerifyingKey>) -> Value {
    json!({ "keys": keys.into_iter().map(|key| key.jwk.clone()).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    /// RFC 8037 appendix A.1 and A.2: a private key and its public key.
    const RFC8037_SEED: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    /// RFC 8037 appendix A.3.
    const RFC8037_KID: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

    fn rfc8037_pem() -> String {
        let mut document = ED25519_PKCS8_V1_PREFIX.to_vec();
        document.extend(URL_SAFE_NO_PAD.decode(RFC8037_SEED).unwrap());
        pem::encode(&pem::Pem::new("PRIVATE KEY", document))
    }

    #[test]
    fn an_ed25519_key_gets_the_rfc_8037_public_key_and_thumbprint() {
        let key = SigningKey::from_pem(&rfc8037_pem()).unwrap();
        let public = key.verifying_key();
        assert_eq!(public.algorithm(), JwtAlgorithm::EdDsa);
        assert_eq!(public.kid(), RFC8037_KID);
        assert_eq!(
            public.jwk(),
            &json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X,
                    "use": "sig", "alg": "EdDSA", "kid": RFC8037_KID})
        );
    }

    #[test]
    fn the_public_key_alone_gives_the_same_verifying_key() {
        let mut spki = ED25519_SPKI_PREFIX.to_vec();
        spki.extend(URL_SAFE_NO_PAD.decode(RFC8037_X).unwrap());
        let public =
            VerifyingKey::from_pem(&pem::encode(&pem::Pem::new("PUBLIC KEY", spki))).unwrap();
        assert_eq!(public.kid(), RFC8037_KID);
        let from_private = VerifyingKey::from_pem(&rfc8037_pem()).unwrap();
        assert_eq!(from_private.jwk(), public.jwk());
    }

    #[test]
    fn generated_keys_are_pkcs8_pem_of_their_algorithm_and_all_differ() {
        for algorithm in [JwtAlgorithm::EdDsa, JwtAlgorithm::Rs256] {
            let first = SigningKey::generate_pem(algorithm).unwrap();
            let second = SigningKey::generate_pem(algorithm).unwrap();
            assert!(first
                .expose_secret()
                .starts_with("-----BEGIN PRIVATE KEY-----\n"));
            let key = SigningKey::from_pem_for(first.expose_secret(), algorithm).unwrap();
            let other = SigningKey::from_pem_for(second.expose_secret(), algorithm).unwrap();
            assert_ne!(key.verifying_key().kid(), other.verifying_key().kid());
        }
        let rsa = SigningKey::generate_pem(JwtAlgorithm::Rs256).unwrap();
        let jwk = SigningKey::from_pem(rsa.expose_secret())
            .unwrap()
            .verifying_key()
            .jwk()
            .clone();
        let modulus = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
        assert_eq!(modulus.len() * 8, GENERATED_RSA_BITS);
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(
            SigningKey::generate_pem(JwtAlgorithm::Hs256).err(),
            Some(KeyError::Symmetric)
        );
    }

    #[test]
    fn a_key_of_another_algorithm_or_kind_is_refused_with_its_reason() {
        let ed = rfc8037_pem();
        assert_eq!(
            SigningKey::from_pem_for(&ed, JwtAlgorithm::Rs256).err(),
            Some(KeyError::WrongAlgorithm {
                expected: JwtAlgorithm::Rs256,
                found: JwtAlgorithm::EdDsa
            })
        );
        assert_eq!(
            SigningKey::from_pem_for(&ed, JwtAlgorithm::Hs256).err(),
            Some(KeyError::Symmetric)
        );
        let mut spki = ED25519_SPKI_PREFIX.to_vec();
        spki.extend([7; 32]);
        let public = pem::encode(&pem::Pem::new("PUBLIC KEY", spki));
        assert_eq!(
            SigningKey::from_pem(&public).err(),
            Some(KeyError::PublicOnly)
        );
        assert_eq!(SigningKey::from_pem("hello").err(), Some(KeyError::NotPem));
        let certificate = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
        assert_eq!(
            VerifyingKey::from_pem(&certificate).err(),
            Some(KeyError::UnexpectedBlock("CERTIFICATE".into()))
        );
        let two = format!("{ed}{ed}");
        assert_eq!(
            VerifyingKey::from_pem(&two).err(),
            Some(KeyError::SeveralKeys(2))
        );
        let garbage = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![0x30, 0x03, 1, 2, 3]));
        assert_eq!(
            SigningKey::from_pem(&garbage).err(),
            Some(KeyError::Unsupported)
        );
    }

    #[test]
    fn a_short_rsa_public_key_is_refused() {
        let short = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).unwrap();
        let public = rsa::pkcs8::EncodePublicKey::to_public_key_pem(
            &short.to_public_key(),
            rsa::pkcs8::LineEnding::LF,
        )
        .unwrap();
        assert_eq!(
            VerifyingKey::from_pem(&public).err(),
            Some(KeyError::Unsupported)
        );
    }

    #[test]
    fn an_rsa_public_key_matches_its_private_key_in_either_encoding() {
        let private = SigningKey::generate_pem(JwtAlgorithm::Rs256).unwrap();
        let key = rsa::pkcs8::DecodePrivateKey::from_pkcs8_pem(private.expose_secret())
            .map(|key: rsa::RsaPrivateKey| key.to_public_key())
            .unwrap();
        let spki = rsa::pkcs8::EncodePublicKey::to_public_key_pem(&key, rsa::pkcs8::LineEnding::LF)
            .unwrap();
        let pkcs1 =
            rsa::pkcs1::EncodeRsaPublicKey::to_pkcs1_pem(&key, rsa::pkcs8::LineEnding::LF).unwrap();
        let expected = SigningKey::from_pem(private.expose_secret()).unwrap();
        for public in [spki, pkcs1] {
            let public = VerifyingKey::from_pem(&public).unwrap();
            assert_eq!(public.jwk(), expected.verifying_key().jwk());
        }
    }

    #[test]
    fn the_jwk_set_lists_each_key_once_in_order() {
        let first = SigningKey::from_pem(&rfc8037_pem()).unwrap();
        let second_pem = SigningKey::generate_pem(JwtAlgorithm::EdDsa).unwrap();
        let second = SigningKey::from_pem(second_pem.expose_secret()).unwrap();
        let set = jwk_set([second.verifying_key(), first.verifying_key()]);
        let kids: Vec<_> = set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["kid"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kids, [second.verifying_key().kid(), RFC8037_KID]);
        assert_eq!(jwk_set([]), json!({"keys": []}));
    }

    #[test]
    fn algorithm_names_parse_in_any_case() {
        assert_eq!(JwtAlgorithm::parse("eddsa"), Some(JwtAlgorithm::EdDsa));
        assert_eq!(JwtAlgorithm::parse("RS256"), Some(JwtAlgorithm::Rs256));
        assert_eq!(JwtAlgorithm::parse(" hs256 "), Some(JwtAlgorithm::Hs256));
        assert_eq!(JwtAlgorithm::parse("ES256"), None);
        assert_eq!(JwtAlgorithm::parse("none"), None);
    }
}
