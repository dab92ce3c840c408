use crate::keys::{jwk_set, JwtAlgorithm, SigningKey, VerifyingKey};
use chrono::{DateTime, Utc};
use jsonwebtoken::{
    decode, decode_header, encode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header,
    TokenData, Validation,
};
use latchkey_domain::{
    ports::{AccessTokenCodec, TokenSigningError},
    AccessClaims, FamilyId, Role, TokenRejection, UserId,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// RFC 9068's media type for access tokens, so an ID token or other JWT signed with the same
/// key cannot be replayed as an access token.
const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// RFC 9068 §4 allows the full media type too; media types compare case-insensitively.
fn is_access_token_typ(typ: Option<&str>) -> bool {
    typ.is_some_and(|typ| {
        typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || typ.eq_ignore_ascii_case("application/at+jwt")
    })
}

#[derive(Clone, Debug)]
pub struct JwtSettings {
    pub keys: JwtKeys,
    pub issuer: String,
    pub audience: String,
    /// Tolerated clock skew between the instance that signed a token and the one checking it,
    /// applied to `exp` and `nbf`.
    pub leeway_secs: u64,
}

/// What signs access tokens and what verifies them.
#[derive(Clone, Debug)]
pub enum JwtKeys {
    /// HS256 with the shared `JWT_SECRET`. Nothing is published.
    Shared(SecretString),
    /// `signing` signs every new token; it and `previous` (the keys rotated out, whose tokens
    /// may not have expired yet) verify, chosen by each token's `kid`. All are published.
    Published {
        signing: SigningKey,
        previous: Vec<VerifyingKey>,
    },
}

/// Access tokens (RFC 9068 profile). Validation pins the algorithm of the key that verifies
/// (chosen by `kid` for published keys) and checks exp, nbf, iss, aud and typ.
pub struct JwtCodec {
    encoding_key: EncodingKey,
    header: Header,
    verifiers: Verifiers,
    published: Vec<VerifyingKey>,
    issuer: String,
    audience: String,
    leeway_secs: i64,
}

enum Verifiers {
    Shared(Box<(DecodingKey, Validation)>),
    /// By `kid`; the signing key's first.
    ByKid(Vec<(VerifyingKey, Validation)>),
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    iss: String,
    aud: String,
    jti: String,
    roles: Vec<String>,
    /// Session id: the refresh-token family this access token was issued for.
    sid: String,
}

impl JwtCodec {
    pub fn new(settings: JwtSettings) -> Self {
        let validation = |algorithm: JwtAlgorithm| {
            let mut validation = Validation::new(algorithm.jsonwebtoken());
            validation.set_issuer(&[&settings.issuer]);
            validation.set_audience(&[&settings.audience]);
            validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
            // Time is checked against the injected clock below, not the library's system time.
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation
        };
        let (encoding_key, header, verifiers, published) = match &settings.keys {
            JwtKeys::Shared(secret) => {
                let key = secret.expose_secret().as_bytes();
                (
                    EncodingKey::from_secret(key),
                    Header::new(Algorithm::HS256),
                    Verifiers::Shared(Box::new((
                        DecodingKey::from_secret(key),
                        validation(JwtAlgorithm::Hs256),
                    ))),
                    Vec::new(),
                )
            }
            JwtKeys::Published { signing, previous } => {
                let current = signing.verifying_key();
                let mut header = Header::new(current.algorithm().jsonwebtoken());
                header.kid = Some(current.kid().to_owned());
                let mut published: Vec<VerifyingKey> = vec![current.clone()];
                for key in previous {
                    if published.iter().all(|known| known.kid() != key.kid()) {
                        published.push(key.clone());
                    }
                }
                let verifiers = published
                    .iter()
                    .map(|key| (key.clone(), validation(key.algorithm())))
                    .collect();
                (
                    signing.encoding_key().clone(),
                    header,
                    Verifiers::ByKid(verifiers),
                    published,
                )
            }
        };
        let mut header = header;
        header.typ = Some(ACCESS_TOKEN_TYP.into());
        Self {
            encoding_key,
            header,
            verifiers,
            published,
            issuer: settings.issuer,
            audience: settings.audience,
            leeway_secs: i64::try_from(settings.leeway_secs).unwrap_or(i64::MAX),
        }
    }

    /// The JWK Set of every key that verifies (RFC 7517): empty for HS256, whose secret is
    /// never published.
    pub fn key_set(&self) -> serde_json::Value {
        jwk_set(&self.published)
    }

    fn verify(&self, token: &str) -> Result<TokenData<Claims>, TokenRejection> {
        let rejection = |e: jsonwebtoken::errors::Error| match e.kind() {
            ErrorKind::ExpiredSignature => TokenRejection::Expired,
            ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
            _ => TokenRejection::Invalid,
        };
        match &self.verifiers {
            Verifiers::Shared(shared) => {
                let (key, validation) = shared.as_ref();
                decode::<Claims>(token, key, validation).map_err(rejection)
            }
            Verifiers::ByKid(keys) => {
                let header = decode_header(token).map_err(|_| TokenRejection::Invalid)?;
                let kid = header.kid.ok_or(TokenRejection::Invalid)?;
                let (key, validation) = keys
                    .iter()
                    .find(|(key, _)| key.kid() == kid)
                    .ok_or(TokenRejection::Invalid)?;
                decode::<Claims>(token, key.decoding_key(), validation).map_err(rejection)
            }
        }
    }
}

impl AccessTokenCodec for JwtCodec {
    fn encode(&self, claims: &AccessClaims) -> Result<String, TokenSigningError> {
        let body = Claims {
            sub: claims.subject.to_string(),
            iat: claims.issued_at.timestamp(),
            nbf: claims.issued_at.timestamp(),
            exp: claims.expires_at.timestamp(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: claims.token_id.to_string(),
            roles: claims.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            sid: claims.session.to_string(),
        };
        encode(&self.header, &body, &self.encoding_key)
            .map_err(|e| TokenSigningError(e.to_string()))
    }

    fn decode(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, TokenRejection> {
        let data = self.verify(token)?;
        if !is_access_token_typ(data.header.typ.as_deref()) {
            return Err(TokenRejection::Invalid);
        }
        let claims = data.claims;
        let now = now.timestamp();
        if now >= claims.exp.saturating_add(self.leeway_secs) {
            return Err(TokenRejection::Expired);
        }
        if now.saturating_add(self.leeway_secs) < claims.nbf {
            return Err(TokenRejection::NotYetValid);
        }
        let timestamp =
            |secs: i64| DateTime::<Utc>::from_timestamp(secs, 0).ok_or(TokenRejection::Invalid);
        let uuid = |raw: &str| Uuid::parse_str(raw).map_err(|_| TokenRejection::Invalid);
        let roles = claims
            .roles
            .iter()
            .map(|r| Role::parse(r).map_err(|_| TokenRejection::Invalid))
            .collect::<Result<_, _>>()?;
        Ok(AccessClaims {
            subject: UserId::from_uuid(uuid(&claims.sub)?),
            roles,
            session: FamilyId::from_uuid(uuid(&claims.sid)?),
            token_id: uuid(&claims.jti)?,
            issued_at: timestamp(claims.iat)?,
            expires_at: timestamp(claims.exp)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    use chrono::{Duration, TimeZone};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn codec_with(secret: &str, issuer: &str, audience: &str) -> JwtCodec {
        JwtCodec::new(JwtSettings {
            keys: JwtKeys::Shared(SecretString::from(secret)),
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_secs: 0,
        })
    }

    fn codec_with_leeway(leeway_secs: u64) -> JwtCodec {
        JwtCodec::new(JwtSettings {
            keys: JwtKeys::Shared(SecretString::from(SECRET)),
            issuer: "latchkey".into(),
            audience: "latchkey-api".into(),
            leeway_secs,
        })
    }

    /// Signs `payload` with our secret under any header, as an attacker who knows a token's
    /// shape (but not, for HS384/HS512, a different key) could.
    fn signed(header: Header, payload: &serde_json::Value) -> String {
        encode(
            &header,
            payload,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn typed(algorithm: Algorithm, typ: &str) -> Header {
        let mut header = Header::new(algorithm);
        header.typ = Some(typ.into());
        header
    }

    fn codec() -> JwtCodec {
        codec_with(SECRET, "latchkey", "latchkey-api")
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap()
    }

    fn claims() -> AccessClaims {
        AccessClaims {
            subject: UserId::from_uuid(Uuid::from_bytes([1; 16])),
            roles: vec![Role::user(), Role::admin()],
            session: FamilyId::from_uuid(Uuid::from_bytes([2; 16])),
            token_id: Uuid::from_bytes([3; 16]),
            issued_at: t0(),
            expires_at: t0() + Duration::hours(1),
        }
    }

    fn header_and_payload(token: &str) -> (serde_json::Value, serde_json::Value) {
        let mut parts = token.split('.');
        let mut part = || {
            let bytes = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        (part(), part())
    }

    #[test]
    fn a_token_round_trips_with_every_claim_and_the_at_jwt_type() {
        let token = codec().encode(&claims()).unwrap();
        let (header, payload) = header_and_payload(&token);
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["alg"], "HS256");
        for claim in [
            "sub", "iat", "nbf", "exp", "iss", "aud", "jti", "roles", "sid",
        ] {
            assert!(payload.get(claim).is_some(), "missing {claim}");
        }
        let decoded = codec()
            .decode(&token, t0() + Duration::minutes(59))
            .unwrap();
        assert_eq!(decoded, claims());
    }

    #[test]
    fn an_expired_token_is_rejected_as_expired() {
        let token = codec().encode(&claims()).unwrap();
        assert_eq!(
            codec().decode(&token, t0() + Duration::hours(1)),
            Err(TokenRejection::Expired)
        );
    }

    #[test]
    fn a_token_used_before_its_nbf_is_rejected() {
        let token = codec().encode(&claims()).unwrap();
        assert_eq!(
            codec().decode(&token, t0() - Duration::seconds(1)),
            Err(TokenRejection::NotYetValid)
        );
    }

    #[test]
    fn a_token_signed_with_another_key_or_for_another_issuer_or_audience_is_invalid() {
        let now = t0() + Duration::minutes(1);
        for other in [
            codec_with(
                "another-secret-another-secret-xx",
                "latchkey",
                "latchkey-api",
            ),
            codec_with(SECRET, "someone-else", "latchkey-api"),
            codec_with(SECRET, "latchkey", "another-api"),
        ] {
            let token = other.encode(&claims()).unwrap();
            assert_eq!(codec().decode(&token, now), Err(TokenRejection::Invalid));
        }
    }

    #[test]
    fn a_tampered_payload_is_invalid() {
        let token = codec().encode(&claims()).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let (_, mut payload) = header_and_payload(&token);
        payload["roles"] = serde_json::json!(["admin"]);
        parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
        assert_eq!(
            codec().decode(&parts.join("."), t0()),
            Err(TokenRejection::Invalid)
        );
    }

    #[test]
    fn a_jwt_without_the_access_token_type_is_invalid() {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".into());
        let (_, payload) = header_and_payload(&codec().encode(&claims()).unwrap());
        let token = encode(
            &header,
            &payload,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(codec().decode(&token, t0()), Err(TokenRejection::Invalid));
    }

    #[test]
    fn both_spellings_of_the_access_token_type_are_accepted_in_any_case() {
        let (_, payload) = header_and_payload(&codec().encode(&claims()).unwrap());
        for typ in [
            "at+jwt",
            "application/at+jwt",
            "AT+JWT",
            "Application/At+Jwt",
        ] {
            let token = signed(typed(Algorithm::HS256, typ), &payload);
            assert_eq!(codec().decode(&token, t0()), Ok(claims()), "typ {typ}");
        }
        for typ in ["JWT", "jwt", "at+jwt ", "application/jwt", "id+jwt"] {
            let token = signed(typed(Algorithm::HS256, typ), &payload);
            assert_eq!(
                codec().decode(&token, t0()),
                Err(TokenRejection::Invalid),
                "typ {typ}"
            );
        }
        let mut untyped = Header::new(Algorithm::HS256);
        untyped.typ = None;
        assert_eq!(
            codec().decode(&signed(untyped, &payload), t0()),
            Err(TokenRejection::Invalid)
        );
    }

    #[test]
    fn the_algorithm_is_pinned_to_hs256_even_with_the_same_secret() {
        let (_, payload) = header_and_payload(&codec().encode(&claims()).unwrap());
        for algorithm in [Algorithm::HS384, Algorithm::HS512] {
            let token = signed(typed(algorithm, "at+jwt"), &payload);
            assert_eq!(
                codec().decode(&token, t0()),
                Err(TokenRejection::Invalid),
                "{algorithm:?}"
            );
        }
    }

    #[test]
    fn a_token_missing_any_claim_is_invalid() {
        let (_, payload) = header_and_payload(&codec().encode(&claims()).unwrap());
        for claim in [
            "sub", "iat", "nbf", "exp", "iss", "aud", "jti", "roles", "sid",
        ] {
            let mut partial = payload.clone();
            partial.as_object_mut().unwrap().remove(claim);
            let token = signed(typed(Algorithm::HS256, "at+jwt"), &partial);
            assert_eq!(
                codec().decode(&token, t0()),
                Err(TokenRejection::Invalid),
                "without {claim}"
            );
        }
    }

    #[test]
    fn the_leeway_tolerates_small_clock_skew_and_no_more() {
        let token = codec().encode(&claims()).unwrap();
        let skewed = codec_with_leeway(30);
        let expiry = t0() + Duration::hours(1);
        assert!(skewed
            .decode(&token, expiry + Duration::seconds(29))
            .is_ok());
        assert_eq!(
            skewed.decode(&token, expiry + Duration::seconds(30)),
            Err(TokenRejection::Expired)
        );
        assert!(skewed.decode(&token, t0() - Duration::seconds(30)).is_ok());
        assert_eq!(
            skewed.decode(&token, t0() - Duration::seconds(31)),
            Err(TokenRejection::NotYetValid)
        );
    }

    #[test]
    fn the_none_algorithm_and_garbage_are_invalid() {
        let (_, payload) = header_and_payload(&codec().encode(&claims()).unwrap());
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        assert_eq!(
            codec().decode(&unsigned, t0()),
            Err(TokenRejection::Invalid)
        );
        assert_eq!(
            codec().decode("not-a-jwt", t0()),
            Err(TokenRejection::Invalid)
        );
        assert_eq!(codec().decode("", t0()), Err(TokenRejection::Invalid));
    }

    fn generated(algorithm: JwtAlgorithm) -> SigningKey {
        let pem = SigningKey::generate_pem(algorithm).unwrap();
        SigningKey::from_pem(pem.expose_secret()).unwrap()
    }

    fn published(signing: &SigningKey, previous: &[&SigningKey]) -> JwtCodec {
        JwtCodec::new(JwtSettings {
            keys: JwtKeys::Published {
                signing: signing.clone(),
                previous: previous
                    .iter()
                    .map(|key| key.verifying_key().clone())
                    .collect(),
            },
            issuer: "latchkey".into(),
            audience: "latchkey-api".into(),
            leeway_secs: 0,
        })
    }

    #[test]
    fn asymmetric_tokens_carry_the_keys_kid_and_algorithm_and_round_trip() {
        for algorithm in [JwtAlgorithm::EdDsa, JwtAlgorithm::Rs256] {
            let key = generated(algorithm);
            let codec = published(&key, &[]);
            let token = codec.encode(&claims()).unwrap();
            let (header, _) = header_and_payload(&token);
            assert_eq!(header["alg"], algorithm.name());
            assert_eq!(header["kid"], key.verifying_key().kid());
            assert_eq!(header["typ"], "at+jwt");
            assert_eq!(codec.decode(&token, t0()), Ok(claims()), "{algorithm}");
        }
    }

    #[test]
    fn tokens_of_a_previous_key_verify_until_the_key_is_dropped() {
        let old = generated(JwtAlgorithm::EdDsa);
        let new = generated(JwtAlgorithm::Rs256);
        let old_token = published(&old, &[]).encode(&claims()).unwrap();
        let rotated = published(&new, &[&old]);
        assert_eq!(rotated.decode(&old_token, t0()), Ok(claims()));
        let new_token = rotated.encode(&claims()).unwrap();
        assert_eq!(
            header_and_payload(&new_token).0["kid"],
            new.verifying_key().kid()
        );
        assert_eq!(
            published(&new, &[]).decode(&old_token, t0()),
            Err(TokenRejection::Invalid)
        );
        assert_eq!(
            published(&old, &[]).decode(&new_token, t0()),
            Err(TokenRejection::Invalid)
        );
    }

    #[test]
    fn the_key_set_lists_the_signing_key_first_and_each_key_once() {
        let old = generated(JwtAlgorithm::EdDsa);
        let new = generated(JwtAlgorithm::EdDsa);
        let set = published(&new, &[&old, &new, &old]).key_set();
        let kids: Vec<_> = set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, [new.verifying_key().kid(), old.verifying_key().kid()]);
        for key in set["keys"].as_array().unwrap() {
            assert!(key.get("d").is_none(), "a private member is published");
        }
        assert_eq!(codec().key_set(), serde_json::json!({"keys": []}));
    }

    #[test]
    fn a_token_without_a_known_kid_or_under_another_kid_is_invalid() {
        let key = generated(JwtAlgorithm::EdDsa);
        let other = generated(JwtAlgorithm::EdDsa);
        let codec = published(&key, &[&other]);
        let token = codec.encode(&claims()).unwrap();
        let (mut header, payload) = header_and_payload(&token);
        let signature = token.rsplit('.').next().unwrap();
        let with_header = |header: &serde_json::Value| {
            format!(
                "{}.{}.{signature}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(payload.to_string())
            )
        };
        header["kid"] = serde_json::json!(other.verifying_key().kid());
        assert_eq!(
            codec.decode(&with_header(&header), t0()),
            Err(TokenRejection::Invalid)
        );
        header["kid"] = serde_json::json!("unknown");
        assert_eq!(
            codec.decode(&with_header(&header), t0()),
            Err(TokenRejection::Invalid)
        );
        header.as_object_mut().unwrap().remove("kid");
        assert_eq!(
            codec.decode(&with_header(&header), t0()),
            Err(TokenRejection::Invalid)
        );
    }

    /// The classic confusion: a verifier that lets the token pick HS256 would check the HMAC
    /// with the public key, which everyone has.
    #[test]
    fn an_hs256_token_keyed_with_the_public_key_or_the_old_secret_is_invalid() {
        let key = generated(JwtAlgorithm::EdDsa);
        let ed25519 = published(&key, &[]);
        let (_, payload) = header_and_payload(&ed25519.encode(&claims()).unwrap());
        let public = key.verifying_key().jwk()["x"].as_str().unwrap().to_owned();
        let mut header = typed(Algorithm::HS256, "at+jwt");
        header.kid = Some(key.verifying_key().kid().to_owned());
        for secret in [
            public.into_bytes(),
            URL_SAFE_NO_PAD
                .decode(key.verifying_key().jwk()["x"].as_str().unwrap())
                .unwrap(),
        ] {
            let forged = encode(&header, &payload, &EncodingKey::from_secret(&secret)).unwrap();
            assert_eq!(ed25519.decode(&forged, t0()), Err(TokenRejection::Invalid));
        }
        let shared = codec().encode(&claims()).unwrap();
        assert_eq!(ed25519.decode(&shared, t0()), Err(TokenRejection::Invalid));
        let asymmetric = ed25519.encode(&claims()).unwrap();
        assert_eq!(
            codec().decode(&asymmetric, t0()),
            Err(TokenRejection::Invalid)
        );
    }
}
