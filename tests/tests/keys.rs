//! Signing keys other services can verify: `latchkey keygen`, a server signing with the key
//! file it is given, its JWK Set, rotation across a rolling deploy, and a separate program
//! (Python with PyJWT, as an integrator would write it) that verifies tokens with nothing but
//! the published keys.

use latchkey_crypto::{JwtAlgorithm, JwtKeys, SigningKey, VerifyingKey};
use latchkey_tests::{
    http::{app, TestApp},
    process::ServerProcess,
    Backend,
};
use poem::http::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use std::{path::PathBuf, process::Command};

const SERVER: &str = env!("CARGO_BIN_EXE_latchkey-server");
const PASSWORD: &str = "correct horse battery staple";
const VERIFIER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/integrators/verify_token.py");

fn python() -> String {
    std::env::var("PYJWT_PYTHON").unwrap_or_else(|_| {
        panic!(
            "the key suite needs PyJWT: run it through scripts/test.sh, or install it \
             (python3 -m venv .tmp/pyjwt-venv && .tmp/pyjwt-venv/bin/pip install \
             'pyjwt[crypto]') and set PYJWT_PYTHON=$PWD/.tmp/pyjwt-venv/bin/python"
        )
    })
}

/// What the integrator's program said: its exit status and its output.
struct Verdict {
    accepted: bool,
    output: String,
}

impl Verdict {
    fn claims(&self) -> Value {
        assert!(self.accepted, "the token was refused: {}", self.output);
        serde_json::from_str(&self.output).expect("the claims as JSON")
    }
}

/// Runs the integrator's verifier, off the async threads (it calls back into the server).
async fn verify_elsewhere(jwks_url: String, token: &str) -> Verdict {
    let token = token.to_owned();
    tokio::task::spawn_blocking(move || {
        let output = Command::new(python())
            .arg(VERIFIER)
            .arg(&jwks_url)
            .arg(&token)
            .output()
            .expect("python runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.trim().is_empty(), "the verifier failed: {stderr}");
        Verdict {
            accepted: output.status.success(),
            output: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        }
    })
    .await
    .unwrap()
}

/// The token with one payload claim changed and the signature kept.
fn tampered(token: &str, claim: &str, value: Value) -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload[claim] = value;
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

fn header(token: &str) -> Value {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let first = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(first).unwrap()).unwrap()
}

fn keygen(arguments: &[&str]) -> std::process::Output {
    Command::new(SERVER)
        .arg("keygen")
        .args(arguments)
        .env_clear()
        .output()
        .expect("the binary runs")
}

fn scratch_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("latchkey-keys-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[tokio::test]
async fn a_keygen_key_signs_tokens_that_pyjwt_verifies_from_the_jwks_alone() {
    let generated = keygen(&["--algorithm", "EdDSA"]);
    assert!(generated.status.success(), "{generated:?}");
    let pem = String::from_utf8(generated.stdout).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert!(pem.ends_with("-----END PRIVATE KEY-----\n"), "{pem}");
    let key_file = scratch_file("signing.pem", &pem);
    let server = ServerProcess::start(
        SERVER,
        &[
            ("JWT_ALGORITHM", "EdDSA"),
            ("JWT_PRIVATE_KEY_FILE", key_file.to_str().unwrap()),
        ],
    );
    let body = json!({ "email": "integrated@example.com", "password": PASSWORD });
    let registered = server
        .call("POST", "/api/auth/register", None, Some(body.clone()))
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let login = server
        .call("POST", "/api/auth/login", None, Some(body))
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let token = login.json()["access_token"].as_str().unwrap().to_owned();

    let jwks = server
        .call("GET", "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(jwks.status, 200);
    assert_eq!(
        jwks.header("cache-control"),
        Some("public, max-age=300"),
        "{:?}",
        jwks.headers
    );
    assert!(jwks
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json")));
    let expected = SigningKey::from_pem(&pem).unwrap();
    assert_eq!(
        jwks.json(),
        json!({ "keys": [expected.verifying_key().jwk()] })
    );
    assert_eq!(header(&token)["kid"], expected.verifying_key().kid());
    assert_eq!(header(&token)["alg"], "EdDSA");

    let url = format!("http://{}/.well-known/jwks.json", server.address);
    let claims = verify_elsewhere(url.clone(), &token).await.claims();
    assert_eq!(claims["sub"], registered.json()["id"]);
    assert_eq!(claims["roles"], json!(["user"]));

    for forged in [
        tampered(&token, "sub", json!(uuid::Uuid::new_v4().to_string())),
        tampered(&token, "roles", json!(["admin"])),
    ] {
        let verdict = verify_elsewhere(url.clone(), &forged).await;
        assert!(
            !verdict.accepted,
            "a tampered token passed: {}",
            verdict.output
        );
        assert!(
            verdict.output.contains("InvalidSignatureError"),
            "{}",
            verdict.output
        );
        let me = server
            .call("GET", "/api/users/me", Some(&forged), None)
            .await;
        assert_eq!(me.status, 401);
    }
}

#[test]
fn keygen_makes_rs256_keys_and_refuses_what_it_cannot_make() {
    let generated = keygen(&["--algorithm=RS256"]);
    assert!(generated.status.success(), "{generated:?}");
    let key = SigningKey::from_pem_for(
        std::str::from_utf8(&generated.stdout).unwrap(),
        JwtAlgorithm::Rs256,
    )
    .unwrap();
    assert_eq!(key.verifying_key().jwk()["kty"], "RSA");

    for arguments in [
        &["--algorithm", "HS256"][..],
        &["--algorithm", "ES256"],
        &[],
        &["EdDSA"],
    ] {
        let refused = keygen(arguments);
        assert_eq!(refused.status.code(), Some(1), "{arguments:?}");
        assert!(
            refused.stdout.is_empty(),
            "{arguments:?}: a key was printed"
        );
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("EdDSA") && said.contains("RS256"), "{said}");
    }
}

fn with_keys(
    algorithm: JwtAlgorithm,
    previous: Vec<VerifyingKey>,
) -> (SigningKey, impl FnOnce(&mut latchkey_bootstrap::Config)) {
    let pem = SigningKey::generate_pem(algorithm).unwrap();
    let signing = SigningKey::from_pem(pem.expose_secret()).unwrap();
    let configured = signing.clone();
    (signing, move |config: &mut latchkey_bootstrap::Config| {
        config.jwt.codec.keys = JwtKeys::Published {
            signing: configured,
            previous,
        };
    })
}

async fn signed_in(app: &TestApp, email: &str) -> String {
    app.signed_in(email).await.str("access_token")
}

/// A rolling deploy: instance A still signs with the old RS256 key while B has the new EdDSA
/// key and the old public key. Every token verifies on B and, through B's JWK Set, elsewhere;
/// B's tokens are refused by A, which does not know the new key yet (the deploy's order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_tokens_of_the_previous_key_still_verify_until_it_is_dropped() {
    let (old, configure_old) = with_keys(JwtAlgorithm::Rs256, vec![]);
    let a = app(Backend::Mongo)
        .config(configure_old)
        .listening()
        .spawn()
        .await;
    let old_public = old.verifying_key().clone();
    let (new, configure_new) = with_keys(JwtAlgorithm::EdDsa, vec![old_public.clone()]);
    let b = app(Backend::Mongo)
        .config(configure_new)
        .sharing_store_with(&a)
        .listening()
        .spawn()
        .await;

    let old_token = signed_in(&a, "rotated@example.com").await;
    let new_token = b
        .login("rotated@example.com", "correct horse battery")
        .await
        .str("access_token");
    assert_eq!(header(&old_token)["kid"], old_public.kid());
    assert_eq!(header(&new_token)["kid"], new.verifying_key().kid());

    assert_eq!(b.me(&old_token).await.status, StatusCode::OK);
    assert_eq!(b.me(&new_token).await.status, StatusCode::OK);
    assert_eq!(a.me(&new_token).await.status, StatusCode::UNAUTHORIZED);

    let jwks = b.get("/.well-known/jwks.json", None).await;
    assert_eq!(
        jwks.body,
        json!({ "keys": [new.verifying_key().jwk(), old_public.jwk()] })
    );
    let url = b.url("/.well-known/jwks.json");
    for token in [&old_token, &new_token] {
        let claims = verify_elsewhere(url.clone(), token).await.claims();
        assert_eq!(claims["iss"], "latchkey");
    }

    // The old key dropped: its tokens stop at once, everywhere.
    let (_, configure_dropped) = with_keys(JwtAlgorithm::EdDsa, vec![]);
    let c = app(Backend::Mongo)
        .config(configure_dropped)
        .sharing_store_with(&a)
        .listening()
        .spawn()
        .await;
    assert_eq!(c.me(&old_token).await.status, StatusCode::UNAUTHORIZED);
    let verdict = verify_elsewhere(c.url("/.well-known/jwks.json"), &old_token).await;
    assert!(!verdict.accepted, "{}", verdict.output);
}

#[tokio::test]
async fn with_hs256_the_key_set_is_empty_and_nothing_verifies_elsewhere() {
    let app = app(Backend::Memory).listening().spawn().await;
    let token = signed_in(&app, "shared@example.com").await;
    assert_eq!(header(&token)["alg"], "HS256");
    assert!(header(&token).get("kid").is_none());
    let jwks = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.status, StatusCode::OK);
    assert_eq!(jwks.body, json!({ "keys": [] }));
    let verdict = verify_elsewhere(app.url("/.well-known/jwks.json"), &token).await;
    assert!(!verdict.accepted, "{}", verdict.output);
    assert!(
        verdict.output.contains("PyJWKSetError"),
        "{}",
        verdict.output
    );

    let posted = app.post("/.well-known/jwks.json", None, json!({})).await;
    assert_eq!(posted.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        posted
            .header("allow")
            .is_some_and(|allow| allow.contains("GET")),
        "{:?}",
        posted.headers
    );
}
