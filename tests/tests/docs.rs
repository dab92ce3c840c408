//! The documentation stays true: links resolve, the settings the code reads are exactly the
//! settings `docs/configuration.md` documents, and no file of the repository names a package
//! registry's host or a Debian mirror's.

use latchkey_bootstrap::config::{LOG_FILTER_VARIABLE, VARIABLES};
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn documents() -> Vec<PathBuf> {
    let mut files = vec![repository().join("README.md")];
    let docs = std::fs::read_dir(repository().join("docs")).expect("docs/ exists");
    for entry in docs {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files
}

/// Targets of inline markdown links, `[text](target)`.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = markdown;
    while let Some(start) = rest.find("](") {
        rest = &rest[start + 2..];
        if let Some(end) = rest.find(')') {
            targets.push(rest[..end].trim().to_owned());
            rest = &rest[end..];
        }
    }
    targets
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves() {
    let mut broken = Vec::new();
    let documents = documents();
    assert!(documents.len() >= 8, "README plus the docs/ pages");
    for document in documents {
        let text = std::fs::read_to_string(&document).unwrap();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let path = target.split('#').next().unwrap();
            let resolved = document.parent().unwrap().join(path);
            if !resolved.exists() {
                broken.push(format!("{}: {target}", document.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

/// Every `NAME` in backticks in the first column of the tables of `docs/configuration.md`.
fn documented_settings() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repository().join("docs/configuration.md")).unwrap();
    let mut names = BTreeSet::new();
    for row in text.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = row.split('|').nth(1).unwrap_or_default();
        for (i, piece) in first_cell.split('`').enumerate() {
            let is_code = i % 2 == 1;
            if is_code
                && !piece.is_empty()
                && piece
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                names.insert(piece.to_owned());
            }
        }
    }
    names
}

#[test]
fn every_setting_the_code_reads_is_documented_and_nothing_else() {
    let read: BTreeSet<String> = VARIABLES
        .iter()
        .chain([&LOG_FILTER_VARIABLE])
        .map(|v| v.to_string())
        .collect();
    let documented = documented_settings();
    let undocumented: Vec<_> = read.difference(&documented).collect();
    let unread: Vec<_> = documented.difference(&read).collect();
    assert!(
        undocumented.is_empty() && unread.is_empty(),
        "read but not documented: {undocumented:?}; documented but not read: {unread:?}"
    );
}

/// Host names of the package registries (Rust crates, PyPI, npm) and of Debian's package
/// pages, archive and mirrors, built from pieces so that this file names none of them either.
fn registry_hosts() -> Vec<String> {
    [
        "crates io",
        "pypi org",
        "pypi python org",
        "pythonhosted org",
        "npmjs com",
        "npmjs org",
        "yarnpkg com",
        "debian org",
        "debian net",
    ]
    .iter()
    .map(|pieces| pieces.replace(' ', "."))
    .collect()
}

/// The repository's files: what git tracks or would add, or, outside a git checkout, every
/// file but build output, tools and the VCS's own.
fn repository_files() -> Vec<PathBuf> {
    let root = repository();
    let listed = std::process::Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(&root)
        .output();
    match listed {
        Ok(output) if output.status.success() => output
            .stdout
            .split(|byte| *byte == 0)
            .filter(|name| !name.is_empty())
            .map(|name| root.join(String::from_utf8_lossy(name).into_owned()))
            .collect(),
        _ => {
            let mut files = Vec::new();
            walk(&root, &mut files);
            files
        }
    }
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("a readable directory")
        .flatten()
    {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        if kind.is_dir() {
            let skipped = [".git", "target", ".tmp", "dist", "node_modules"];
            if !skipped.iter().any(|s| name == *s) {
                walk(&entry.path(), files);
            }
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
}

#[test]
fn no_file_names_a_package_registry_or_a_debian_mirror() {
    let hosts = registry_hosts();
    let files = repository_files();
    assert!(files.len() > 50, "only {} files found", files.len());
    let mut named = Vec::new();
    for file in files {
        // Cargo writes its registry's index into lock files itself.
        if file.file_name().is_some_and(|n| n == "Cargo.lock") {
            continue;
        }
        // Gone from the work tree, or not text (compressed data): nothing written there.
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let text = text.to_ascii_lowercase();
        for host in &hosts {
            if text.contains(host.as_str()) {
                named.push(format!("{}: {host}", file.display()));
            }
        }
    }
    assert!(
        named.is_empty(),
        "link a tool's own home page or repository, and take mirrors from the machine's \
         configuration: {named:#?}"
    );
}
