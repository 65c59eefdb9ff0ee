//! The layers of `src/` point down: each top-level module uses only the modules listed before
//! it in [`LAYERS`] (the order of `src/lib.rs`'s table and of the data flow in DESIGN.md). A
//! `crate::…` or `super::…` path that reaches a module further down the list fails this test,
//! naming the file, the line and the arrow.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// Every top-level module of the library, lowest first. A new module must be placed here.
const LAYERS: &[&str] = &[
    "os",
    "config",
    "tls",
    "health",
    "telemetry",
    "routing",
    "cluster",
    "supervisor",
    "admin",
    "proxy",
    "server",
    "demo",
];

/// Files that sit above every layer: they may use anything.
const ABOVE_ALL: &[&str] = &["lib.rs", "main.rs", "bin"];

#[test]
fn no_module_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 20, "found only {} files in src/", files.len());
    let mut problems = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        if ABOVE_ALL.iter().any(|a| first == *a) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let module = module_path(relative);
        for arrow in arrows_up(&module, &text) {
            problems.push(format!("src/{}: {arrow}", relative.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "modules reach up the layers (see src/lib.rs):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_catches_an_arrow_up_and_lets_arrows_down_pass() {
    let routing = vec!["routing".to_string(), "backend".to_string()];
    let up = "use crate::admin::NodeSeries;\nuse crate::{config::Algorithm, cluster};\n";
    let found = arrows_up(&routing, up);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("line 1: routing → admin"), "{found:?}");
    assert!(found[1].contains("line 2: routing → cluster"), "{found:?}");
    // `super::super::` from routing/backend.rs is the crate root: `super::super::proxy` is up.
    assert_eq!(
        arrows_up(&routing, "fn f() { super::super::proxy::x(); }").len(),
        1
    );
    let down = "use crate::telemetry::Counters;\nuse super::select; // crate::admin in a comment\n\
                const S: &str = \"crate::server\";\nuse crate::{config, health::NodeState};\n";
    assert_eq!(arrows_up(&routing, down), Vec::<String>::new());
    assert_eq!(
        arrows_up(&routing, "use crate::newmodule::X;"),
        ["line 1: routing → newmodule, which is not in LAYERS"]
    );
}

/// `cluster/member.rs` → `["cluster", "member"]`; `cluster/mod.rs` → `["cluster"]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" {
            parts.push(stem.to_string());
        }
    }
    parts
}

/// Every path in `text` (a file of module `module`) that names a top-level module ranked
/// above `module[0]`, as `line N: from → to`.
fn arrows_up(module: &[String], text: &str) -> Vec<String> {
    let own = rank(&module[0]).expect("the file's own module is in LAYERS");
    let code = without_comments_and_strings(text);
    let mut found = Vec::new();
    for (target, offset) in top_modules_named(module, &code) {
        let line = code[..offset].matches('\n').count() + 1;
        match rank(&target) {
            Some(r) if r > own => found.push(format!("line {line}: {} → {target}", module[0])),
            Some(_) => {}
            None => found.push(format!(
                "line {line}: {} → {target}, which is not in LAYERS",
                module[0]
            )),
        }
    }
    found
}

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|m| *m == module)
}

/// The top-level modules that `crate::` paths, and `super::` paths climbing to the crate
/// root, name in `code`, with their byte offsets.
fn top_modules_named(module: &[String], code: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let at_word_start = i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != b':';
        let rest = &bytes[i..];
        let after_root = if at_word_start && rest.starts_with(b"crate::") {
            Some(i + "crate::".len())
        } else if at_word_start && rest.starts_with(b"super::") {
            let mut j = i;
            let mut climbs = 0;
            while bytes[j..].starts_with(b"super::") {
                j += "super::".len();
                climbs += 1;
            }
            if climbs >= module.len() {
                Some(j)
            } else {
                i = j;
                continue;
            }
        } else {
            None
        };
        match after_root {
            Some(start) => {
                for name in names_at(&code[start..]) {
                    if name != "self" && name != "super" && name != "crate" {
                        out.push((name, i));
                    }
                }
                i = start;
            }
            None => i += 1,
        }
    }
    out
}

/// The first path segment of each path at the start of `text`: `ident` or `{a::b, c}`.
fn names_at(text: &str) -> Vec<String> {
    let text = text.trim_start();
    if let Some(group) = text.strip_prefix('{') {
        let mut names = Vec::new();
        let (mut depth, mut item_start) = (0usize, 0usize);
        for (k, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    names.extend(first_ident(&group[item_start..k]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    names.extend(first_ident(&group[item_start..k]));
                    item_start = k + 1;
                }
                _ => {}
            }
        }
        names
    } else {
        first_ident(text).into_iter().collect()
    }
}

fn first_ident(text: &str) -> Option<String> {
    let ident: String = text
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!ident.is_empty()).then_some(ident)
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `text` with comments and string literals blanked (newlines kept, so lines still count).
fn without_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                out.push(blank(chars[i]));
                i += 1;
            }
            i += 2;
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && raw_string(&chars, i) {
            // r"…" or r#"…"#: ends at a quote followed by as many hashes.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            j += 1;
            while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                out.push(blank(chars[j]));
                j += 1;
            }
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    out.push(blank(ch));
                }
                i += 1;
            }
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether the `r` at `i` opens a raw string (not the end of an identifier like `for`).
fn raw_string(chars: &[char], i: usize) -> bool {
    let prev_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    let mut j = i + 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    !prev_ident && chars.get(j) == Some(&'"')
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
