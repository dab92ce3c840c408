//! `latchkey-client-gen SPEC OUT`: writes a typed Rust client for every operation in SPEC.

use anyhow::Context;
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(spec), Some(out)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: latchkey-client-gen <openapi.json> <output.rs>");
    };
    let code = latchkey_client_gen::generate(Path::new(&spec))?;
    let out = Path::new(&out);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Rewrite only on change so the site is not rebuilt for nothing.
    if std::fs::read_to_string(out).ok().as_deref() != Some(code.as_str()) {
        std::fs::write(out, code).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
