//! The house rule, checked: no module imports one of a higher layer (see the
//! layer map in `lib.rs`). `cargo test -p journeymap layering` runs it.

use std::{collections::BTreeMap, path::Path};

/// Each top-level module's layer, lowest first.
const LAYERS: &[(&str, u8)] = &[
    ("config", 0),
    ("ids", 0),
    ("telemetry", 0),
    ("auth", 0),
    ("cache", 0),
    ("db", 1),
    ("audit", 2),
    ("metrics", 2),
    ("events", 3),
    ("webhooks", 4),
    ("domain", 5),
    ("analytics", 6),
    ("seed", 6),
    ("graphql", 7),
    ("http", 8),
    ("app", 9),
    ("cli", 10),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The top-level module a source file belongs to (`domain` for
/// `domain/journeys.rs`), if it is one of the layers.
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// Every `crate::<module>` a file's code names, grouped imports
/// (`use crate::{a, b::c}`) included; comments are left out.
fn imports(source: &str) -> Vec<String> {
    let code: String = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |text: &str| -> String {
        text.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The first name of every item at the group's top level.
            let mut depth = 0usize;
            let mut item_start = true;
            for (offset, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphanumeric() || c == '_') => {
                        found.push(ident(&group[offset..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_imports_a_higher_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut upward: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&root).expect("under src");
        let Some(own) = module_of(relative).and_then(|m| layer(&m).map(|l| (m, l))) else {
            continue;
        };
        let source = std::fs::read_to_string(&file).expect("read");
        for imported in imports(&source) {
            if let Some(theirs) = layer(&imported)
                && theirs > own.1
            {
                upward
                    .entry(relative.display().to_string())
                    .or_default()
                    .push(imported);
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run up a layer (file: modules above it): {upward:#?}"
    );
}

#[test]
fn the_rule_sees_imports() {
    assert_eq!(
        imports(
            "use crate::{\n    domain::{self, x},\n    http::AppState,\n}; // crate::cli\ncrate::ids::new_id()"
        ),
        vec!["domain", "http", "ids"]
    );
}
