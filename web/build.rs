//! Generates the typed API client from the committed OpenAPI document, so the site always calls
//! the API the server describes.

use std::{env, fs, path::Path};

fn main() {
    let spec_path = "../openapi/openapi.json";
    println!("cargo:rerun-if-changed={spec_path}");
    let spec: openapiv3::OpenAPI =
        serde_json::from_reader(fs::File::open(spec_path).expect("openapi/openapi.json exists"))
            .expect("openapi/openapi.json is a valid OpenAPI 3.0 document");
    let tokens = progenitor::Generator::default()
        .generate_tokens(&spec)
        .expect("progenitor can generate a client from the document");
    let code = prettyplease::unparse(&syn::parse2(tokens).expect("generated code parses"));
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("api_client.rs");
    fs::write(out, code).expect("OUT_DIR is writable");
}
