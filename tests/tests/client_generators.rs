//! The OpenAPI document as integrators use it: a mainstream client generator that is not the
//! site's own (openapi-python-client) turns `openapi/openapi.json` into a complete, typed client
//! without a single warning, and that client registers, logs in, reads the account, refreshes
//! and logs out against a running server. Also, on the code's own document, the shape that
//! generators refuse: an `allOf` around a `$ref`, which poem-openapi writes for a field whose
//! type has a schema of its own when the field carries a doc comment or other attributes.
//!
//! The generator suite needs openapi-python-client; `scripts/test.sh` installs it into
//! `.tmp/openapi-python-client-venv` and names it in `OPENAPI_PYTHON_CLIENT`.

use latchkey_tests::{http::app, Backend};
use serde_json::{json, Value};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

const DOCUMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
/// The integrator's program: drives the server through the generated client.
const DRIVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/integrators/generated_client.py"
);
/// The generated package's name (the folder the generator writes).
const PACKAGE: &str = "latchkey_client";
const EMAIL: &str = "generated-client@example.com";
const PASSWORD: &str = "correct horse battery staple";

/// The generator's command. Its virtualenv's `python` runs the generated client (httpx and
/// attrs come with the generator) and its `ruff` formats the generated code.
fn generator() -> PathBuf {
    std::env::var_os("OPENAPI_PYTHON_CLIENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "the client generator suite needs openapi-python-client: run it through \
                 scripts/test.sh, or install it (python3 -m venv \
                 .tmp/openapi-python-client-venv && .tmp/openapi-python-client-venv/bin/pip \
                 install --constraint scripts/openapi-python-client-constraints.txt \
                 openapi-python-client) and set OPENAPI_PYTHON_CLIENT=\
                 $PWD/.tmp/openapi-python-client-venv/bin/openapi-python-client"
            )
        })
}

/// `PATH` with the generator's virtualenv first.
fn tool_path(bin: &Path) -> std::ffi::OsString {
    let rest = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin.to_path_buf()];
    paths.extend(std::env::split_paths(&rest));
    std::env::join_paths(paths).expect("a PATH")
}

/// What the generator printed besides its one `Generating <path>` line: each warning it gives
/// (a response omitted, a schema removed, an endpoint skipped, a post-processing step skipped)
/// means the generated client lacks something the document says.
fn complaints(printed: &str) -> Vec<&str> {
    printed
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("Generating "))
        .collect()
}

fn is_reference(schema: &Value) -> bool {
    schema.get("$ref").is_some()
}

/// Where, in `value`, an `allOf` holds a `$ref` (as JSON pointers from `at`).
fn wrapped_references(value: &Value, at: &str, found: &mut Vec<String>) {
    match value {
        Value::Object(members) => {
            let wraps = members
                .get("allOf")
                .and_then(Value::as_array)
                .is_some_and(|all| all.iter().any(is_reference));
            if wraps {
                found.push(at.to_owned());
            }
            for (key, inner) in members {
                wrapped_references(inner, &format!("{at}/{key}"), found);
            }
        }
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                wrapped_references(inner, &format!("{at}/{index}"), found);
            }
        }
        _ => {}
    }
}

/// How many operations the document has (each method of each path).
fn operations(document: &Value) -> usize {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let paths = document["paths"].as_object().expect("paths");
    let mut count = 0;
    for item in paths.values().filter_map(Value::as_object) {
        for key in item.keys() {
            if METHODS.contains(&key.as_str()) {
                count += 1;
            }
        }
    }
    count
}

/// The endpoint modules the generator wrote: one per operation, in `api/<tag>/`.
fn endpoint_modules(package: &Path) -> Vec<String> {
    let mut modules = Vec::new();
    let tags = std::fs::read_dir(package.join("api")).expect("api/");
    for tag in tags.map(|entry| entry.unwrap().path()) {
        let Ok(files) = std::fs::read_dir(&tag) else {
            continue;
        };
        for file in files.map(|entry| entry.unwrap().path()) {
            let name = file.display().to_string();
            if name.ends_with(".py") && !name.ends_with("__init__.py") {
                modules.push(name);
            }
        }
    }
    modules.sort();
    modules
}

#[test]
fn no_schema_in_the_document_wraps_a_reference_in_all_of() {
    let text = latchkey_bootstrap::openapi_json();
    let document: Value = serde_json::from_str(&text).unwrap();
    let mut found = Vec::new();
    wrapped_references(&document, "#", &mut found);
    assert!(
        found.is_empty(),
        "`allOf` around a `$ref`: client generators refuse it (openapi-python-client drops the \
         schema and every response using it). poem-openapi writes one for a field whose type \
         has its own schema when the field has a doc comment or other attributes; describe the \
         type in its own doc comment instead. At: {found:#?}"
    );
    // The field's description lives on its type, so the document still says it.
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["TokenPairView"]["properties"]["token_type"],
        json!({ "$ref": "#/components/schemas/TokenType" })
    );
    assert_eq!(schemas["TokenType"]["enum"], json!(["Bearer"]));
    assert!(
        schemas["TokenType"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("always `Bearer`")),
        "{}",
        schemas["TokenType"]
    );
}

#[test]
fn the_checks_catch_what_made_the_generator_drop_the_login_response() {
    // The document as it was: `token_type` an `allOf` of the enum and a description.
    let before = json!({ "components": { "schemas": { "TokenPairView": { "properties": {
        "token_type": {
            "description": "Always `Bearer`.",
            "allOf": [
                { "$ref": "#/components/schemas/TokenType" },
                { "description": "Always `Bearer`." }
            ]
        }
    } } } } });
    let mut found = Vec::new();
    wrapped_references(&before, "#", &mut found);
    assert_eq!(
        found,
        ["#/components/schemas/TokenPairView/properties/token_type"]
    );

    // What openapi-python-client 0.29.1 printed over that document (abridged).
    let printed = [
        "Generating /tmp/latchkey-client/latchkey_client",
        "Warning(s) encountered while generating. Client was generated, but some pieces may \
         be missing",
        "",
        "WARNING parsing POST /auth/login within auth.",
        "",
        "Cannot parse response for status code <...> (Could not find reference in parsed \
         models or enums), response will be omitted from generated client",
        "",
        "Unable to process schema /components/schemas/TokenPairView:",
        "",
        "Cannot take allOf a non-object",
    ]
    .join("\n");
    let said = complaints(&printed);
    let mentions = |text: &str| said.iter().any(|line| line.contains(text));
    assert!(mentions("response will be omitted"), "{said:#?}");
    assert!(mentions("Cannot take allOf a non-object"), "{said:#?}");
    let clean = "Generating /tmp/latchkey-client/latchkey_client\n";
    assert_eq!(complaints(clean), Vec::<&str>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_generated_by_openapi_python_client_registers_logs_in_refreshes_and_logs_out() {
    let generator = generator();
    let bin = generator.parent().unwrap().to_path_buf();
    let python = bin.join("python");
    let scratch = std::env::temp_dir().join(format!("latchkey-client-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&scratch).expect("a scratch directory");
    let package = scratch.join(PACKAGE);

    // Generate: every operation, every response, not one warning.
    let generated = Command::new(&generator)
        .args(["generate", "--path", DOCUMENT, "--output-path"])
        .arg(&package)
        .args(["--meta", "none", "--fail-on-warning"])
        .env("PATH", tool_path(&bin))
        .env("NO_COLOR", "1")
        .output()
        .expect("openapi-python-client runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&generated.stdout),
        String::from_utf8_lossy(&generated.stderr)
    );
    assert!(
        complaints(&printed).is_empty(),
        "openapi-python-client warned about openapi/openapi.json, so its client lacks what the \
         warnings name:\n{printed}"
    );
    assert!(generated.status.success(), "{printed}");
    let committed = std::fs::read_to_string(DOCUMENT).expect("the document");
    let document: Value = serde_json::from_str(&committed).unwrap();
    let modules = endpoint_modules(&package);
    assert_eq!(
        modules.len(),
        operations(&document),
        "one generated module per operation: {modules:#?}"
    );

    // Build: every generated module compiles.
    let compiled = Command::new(&python)
        .args(["-m", "compileall", "-q"])
        .arg(&package)
        .output()
        .expect("python runs");
    assert!(
        compiled.status.success(),
        "the generated client does not compile: {}{}",
        String::from_utf8_lossy(&compiled.stdout),
        String::from_utf8_lossy(&compiled.stderr)
    );

    // Drive a server with it.
    let app = app(Backend::Memory).listening().spawn().await;
    let base_url = app.url("/api");
    let pythonpath = scratch.clone();
    let driven = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(python);
        command
            .arg(DRIVER)
            .args([PACKAGE, base_url.as_str(), EMAIL, PASSWORD])
            .env("PYTHONPATH", pythonpath)
            .env("PYTHONDONTWRITEBYTECODE", "1");
        // httpx would send even loopback requests through a proxy named in the environment.
        for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            command.env_remove(proxy).env_remove(proxy.to_lowercase());
        }
        command.output().expect("python runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&driven.stdout);
    let stderr = String::from_utf8_lossy(&driven.stderr);
    assert!(
        driven.status.success(),
        "the generated client failed (generated into {}):\n{stdout}\n{stderr}",
        package.display()
    );
    for step in [
        "register: 201 UserView",
        "login: 200 TokenPairView token_type=Bearer",
        "me: 200 UserView generated-client@example.com",
        "refresh: 200 TokenPairView token_type=Bearer",
        "logout: 204",
        "refresh after logout: 401 ErrorBody",
    ] {
        assert!(stdout.contains(step), "missing {step}:\n{stdout}{stderr}");
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
