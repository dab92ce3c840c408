//! The documentation stays true: links resolve, and the settings the code reads are exactly the
//! settings `docs/configuration.md` documents.

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
