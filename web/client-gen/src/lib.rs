use anyhow::Context;
use std::path::Path;

/// Pretty-printed Rust source of a progenitor client for the OpenAPI document at `spec`.
pub fn generate(spec: &Path) -> anyhow::Result<String> {
    let file = std::fs::File::open(spec).with_context(|| format!("opening {}", spec.display()))?;
    let mut value: serde_json::Value =
        serde_json::from_reader(file).with_context(|| format!("{} is not JSON", spec.display()))?;
    without_string_patterns(&mut value);
    let document: openapiv3::OpenAPI = serde_json::from_value(value)
        .with_context(|| format!("{} is not an OpenAPI 3.0 document", spec.display()))?;
    let tokens = progenitor::Generator::default()
        .generate_tokens(&document)
        .map_err(|e| anyhow::anyhow!("progenitor cannot generate a client: {e}"))?;
    let file = syn::parse2(tokens).context("generated code does not parse")?;
    Ok(prettyplease::unparse(&file))
}

/// Drops `pattern` from string schemas: progenitor would check them in the browser with the
/// `regress` crate, and the server checks them anyway, answering 422 with a message naming the
/// rule, which the site shows.
fn without_string_patterns(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            if object.get("type").and_then(|t| t.as_str()) == Some("string") {
                object.remove("pattern");
            }
            object.values_mut().for_each(without_string_patterns);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(without_string_patterns),
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
        ] {
            assert!(code.contains(method), "missing `{method}`");
        }
        assert!(code.contains("pub struct ErrorBody"));
        assert!(
            !code.contains("regress"),
            "no pattern checks in the browser"
        );
    }

    #[test]
    fn only_string_patterns_are_dropped() {
        let mut schema = serde_json::json!({
            "type": "object",
            "properties": {
                "pattern": { "type": "string", "pattern": "^a$", "maxLength": 3 }
            }
        });
        without_string_patterns(&mut schema);
        assert_eq!(
            schema["properties"]["pattern"],
            serde_json::json!({ "type": "string", "maxLength": 3 })
        );
    }
}
