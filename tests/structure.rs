//! The code's shape, checked: no import circle between the files of any crate (the layers stay
//! codecs -> core -> replay -> front ends, and inside a crate each file depends one way), and no
//! library file grows past ~600 lines without saying why at its top.
//!
//! A file's imports are every `crate::` and `super::` path it names (in `use` lines and in code),
//! resolved to the file of the module they reach. A crate root's or a `mod.rs`'s `pub use` lines
//! are its public face, not imports, and are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: [&str; 6] = ["codecs", "actions", "core", "replay", "service", "."];

/// Module path ("log::append") -> file, for one crate's src/.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                parts.pop();
            }
            out.insert(parts.join("::"), path);
        }
    }
    out
}

/// Code without comments and without `#[cfg(test)]` modules at the end of a file.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a file names from `crate::` or `super::`, expanded over `{...}` groups, as segment
/// lists relative to the crate root.
fn referenced(module: &str, text: &str, facade: bool) -> Vec<Vec<String>> {
    let here: Vec<String> =
        if module.is_empty() { Vec::new() } else { module.split("::").map(String::from).collect() };
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let (base, skip) = if rest.starts_with("crate::") {
            (Vec::new(), "crate::".len())
        } else if rest.starts_with("super::") {
            (here[..here.len().saturating_sub(1)].to_vec(), "super::".len())
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':') {
            i += skip;
            continue;
        }
        // A façade's `pub use` line is not an import.
        let line_start = text[..i].rfind('\n').map_or(0, |p| p + 1);
        let is_pub_use = text[line_start..i].trim_start().starts_with("pub use")
            || text[line_start..i].trim_start().starts_with("pub(crate) use");
        let end = rest.find(';').unwrap_or(rest.len()).min(rest.len());
        let stmt = &rest[skip..end];
        i += skip;
        if facade && is_pub_use {
            continue;
        }
        for path in expand(stmt) {
            let mut full = base.clone();
            full.extend(path);
            out.push(full);
        }
    }
    out
}

/// `a::{b, c::d}` -> [[a, b], [a, c, d]]; a plain path stops at its first non-path character.
fn expand(stmt: &str) -> Vec<Vec<String>> {
    let mut prefix = Vec::new();
    let mut rest = stmt;
    loop {
        let name_len = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
        if name_len == 0 {
            break;
        }
        prefix.push(rest[..name_len].to_owned());
        rest = &rest[name_len..];
        if let Some(r) = rest.strip_prefix("::") {
            rest = r;
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 0;
                let mut items = Vec::new();
                let mut start = 0;
                for (k, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            items.push(&group[start..k]);
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            items.push(&group[start..k]);
                            start = k + 1;
                        }
                        _ => {}
                    }
                }
                return items
                    .iter()
                    .flat_map(|item| {
                        let item = item.trim();
                        let item = item.strip_prefix("self").map_or(item, |_| "");
                        let mut subs = expand(item);
                        if subs.is_empty() {
                            subs.push(Vec::new());
                        }
                        subs.into_iter()
                            .map(|s| prefix.iter().cloned().chain(s).collect::<Vec<_>>())
                            .collect::<Vec<_>>()
                    })
                    .collect();
            }
        } else {
            break;
        }
    }
    vec![prefix]
}

fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &mods {
        let facade = file.ends_with("mod.rs") || file.ends_with("lib.rs") || file.ends_with("main.rs");
        let text = code(&std::fs::read_to_string(file).unwrap());
        let targets = edges.entry(module.clone()).or_default();
        for path in referenced(module, &text, facade) {
            // The longest prefix that is a module.
            let target = (0..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|m| mods.contains_key(m))
                .unwrap_or_default();
            if &target != module {
                targets.insert(target);
            }
        }
    }
    edges
}

/// A circle in `edges`, if there is one.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|p| p == n).unwrap();
                let mut c = path[start..].to_vec();
                c.push(n.to_owned());
                return Some(c);
            }
            _ => {}
        }
        state.insert(n.to_owned(), 1);
        path.push(n.to_owned());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, edges, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_crate_has_an_import_circle() {
    for krate in CRATES {
        let edges = graph(&root().join(krate).join("src"));
        assert!(edges.len() > 3, "{krate}: no modules found");
        if let Some(c) = circle(&edges) {
            panic!(
                "{krate}: an import circle: {}",
                c.iter()
                    .map(|m| if m.is_empty() { "(crate root)" } else { m })
                    .collect::<Vec<_>>()
                    .join(" -> ")
            );
        }
    }
}

#[test]
fn the_circle_check_finds_a_circle() {
    // The check itself, on a made-up graph and on made-up files: it cannot pass by seeing nothing.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    edges.entry("c".into()).or_default().insert("a".into());
    assert_eq!(circle(&edges).unwrap(), ["a", "b", "c", "a"]);
    assert_eq!(
        expand("keys::{self, KeyError, source::{KeySource, x}}"),
        [
            vec!["keys"],
            vec!["keys", "KeyError"],
            vec!["keys", "source", "KeySource"],
            vec!["keys", "source", "x"]
        ]
    );
    let refs =
        referenced("log::append", "use super::state::{Log, lock};\nlet x = crate::layout::SEGMENTS;", false);
    assert_eq!(refs, [vec!["log", "state", "Log"], vec!["log", "state", "lock"], vec!["layout", "SEGMENTS"]]);
    let core = graph(&root().join("core/src"));
    assert!(core["log::append"].contains("log::state"), "{:?}", core["log::append"]);
}

#[test]
fn no_library_file_is_over_600_lines_without_saying_why() {
    for krate in ["codecs", "actions", "core", "replay", "service"] {
        for file in modules(&root().join(krate).join("src")).values() {
            let text = std::fs::read_to_string(file).unwrap();
            let lines = code(&text).lines().count();
            let says_why =
                text.lines().take_while(|l| l.starts_with("//!")).any(|l| l.contains("Longer than"));
            assert!(
                lines <= 620 || says_why,
                "{} has {lines} lines of code and does not say why at its top",
                file.display()
            );
        }
    }
}
