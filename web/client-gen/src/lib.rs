use anyhow::Context;
use std::path::Path;

/// Pretty-printed Rust source of a progenitor client for the OpenAPI document at `spec`.
pub fn generate(spec: &Path) -> anyhow::Result<String> {
    let file = std::fs::File::open(spec).with_context(|| format!("opening {}", spec.display()))?;
    let mut document: serde_json::Value =
        serde_json::from_reader(file).with_context(|| format!("{} is not JSON", spec.display()))?;
    drop_string_patterns(&mut document);
    let document: openapiv3::OpenAPI = serde_json::from_value(document)
        .with_context(|| format!("{} is not an OpenAPI 3.0 document", spec.display()))?;
    let tokens = progenitor::Generator::default()
        .generate_tokens(&document)
        .map_err(|e| anyhow::anyhow!("progenitor cannot generate a client: {e}"))?;
    let file = syn::parse2(tokens).context("generated code does not parse")?;
    Ok(prettyplease::unparse(&file))
}

/// The server checks every string's `pattern` (and answers 422 naming the rule); checking
/// them in the browser as well would need a regex engine in the site (`regress`) for nothing.
fn drop_string_patterns(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(fields) => {
            if fields.get("type").and_then(serde_json::Value::as_str) == Some("string") {
                fields.remove("pattern");
            }
            fields.values_mut().for_each(drop_string_patterns);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_string_patterns),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_projects_document_yields_a_method_per_operation() {
        let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/openapi.json");
        let code = generate(&spec).unwrap();
        for method in [
            "pub async fn register",
            "pub async fn login",
            "pub async fn refresh",
            "pub async fn logout",
            "pub async fn get_current_user",
            "pub async fn get_session",
            "pub async fn admin_list_users",
        ] {
            assert!(code.contains(method), "missing `{method}`");
        }
        assert!(code.contains("pub struct ErrorBody"));
        // Patterns are the server's to check; checking them here would need `regress`.
        assert!(
            !code.contains("regress"),
            "no pattern checks in the browser"
        );
    }
}
