//! `openapi/openapi.json` is what clients are generated from; it must match the code.

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
    let generated = latchkey_bootstrap::openapi_json();
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json is out of date; regenerate it with\n\n    \
         cargo run --bin latchkey -- openapi > openapi/openapi.json\n"
    );
}

#[test]
fn every_operation_has_an_operation_id_and_protected_ones_name_the_bearer_scheme() {
    let spec: serde_json::Value =
        serde_json::from_str(&latchkey_bootstrap::openapi_json()).unwrap();
    let public = [
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/auth/email/verify",
        "/auth/password/forgot",
        "/auth/password/reset",
        "/health/live",
        "/health/ready",
    ];
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() >= 7);
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().unwrap() {
            assert!(
                operation["operationId"]
                    .as_str()
                    .is_some_and(|id| !id.is_empty()),
                "{method} {path} has no operationId"
            );
            // An empty requirement makes the token optional (verifying an email reads it when
            // sent): such an operation is public.
            let secured = operation
                .get("security")
                .and_then(|security| security.as_array())
                .is_some_and(|requirements| {
                    !requirements
                        .iter()
                        .any(|r| r.as_object().is_some_and(|r| r.is_empty()))
                });
            assert_eq!(
                secured,
                !public.contains(&path.as_str()),
                "{method} {path} security"
            );
        }
    }
}
