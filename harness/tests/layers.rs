//! The house's rule, checked on every `cargo test`: netfault's modules form layers that only
//! point down, and no module imports itself back through others.
//!
//! It reads the library's sources (`harness/src`, not its unit tests), finds every path that
//! starts with `crate::` or `super::` (in `use` trees too), and resolves it to the file that
//! defines the name: through a `mod.rs` that only re-exports, to the child that defines it.
//! Two checks fail the suite:
//! - a cycle between files (A uses B, B uses ... A), listed with the names that tie it;
//! - an arrow from a lower layer to a higher one, by the table [`LAYERS`].
//!
//! A new top-level module must be given a layer here; the test says so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first; each top-level module of the library belongs to exactly one, and a
/// module may use only its own layer and those below it.
const LAYERS: &[(&str, &[&str])] = &[
    ("model", &["topology", "testhook"]),
    (
        "kernel access",
        &[
            "error",
            "clock",
            "paths",
            "netns",
            "nl",
            "nl6",
            "nft",
            "conntrack",
            "tools",
            "privilege",
            "registry",
            "enter",
            "leakcheck",
            "runtime",
            "dropwatch",
        ],
    ),
    ("lab", &["lab", "cni", "script"]),
    ("probe", &["probe", "matrix"]),
    ("fault, diagnose", &["fault", "diagnose"]),
    (
        "audit, drill, pictures",
        &["audit", "drill", "diagram", "packets"],
    ),
    (
        "case loop",
        &[
            "case", "steps", "verdict", "newcase", "report", "junit", "explore",
        ],
    ),
    ("cli", &["cli"]),
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// A source file as a module path: `diagnose/walk.rs` → `diagnose::walk`, `lab/mod.rs` → `lab`,
/// `lib.rs` → `` (the crate root).
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts.join("::")
}

/// The library's files as (module, source without comments and unit tests).
fn read_modules() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src_dir()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(src_dir()).unwrap();
                if rel == Path::new("main.rs") {
                    continue; // the binary: a crate of its own on top of the library
                }
                let text = std::fs::read_to_string(&p).unwrap();
                out.insert(module_of(rel), strip(&text));
            }
        }
    }
    out
}

/// Drops comments, string contents and `#[cfg(test)]` modules (unit tests may use anything).
fn strip(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let b: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == '/' && b.get(i + 1) == Some(&'/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '\'' && b.get(i + 2) == Some(&'\'') {
            i += 3; // a char literal such as '"'
        } else if c == '\'' && b.get(i + 1) == Some(&'\\') && b.get(i + 3) == Some(&'\'') {
            i += 4;
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_at(b: &[u8], mut i: usize) -> (String, usize) {
    let start = i;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    (String::from_utf8_lossy(&b[start..i]).into_owned(), i)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Parses a path or use tree at `i` (after `crate::`), pushing every full path it names.
fn parse_tree(b: &[u8], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    loop {
        i = skip_ws(b, i);
        if b.get(i) == Some(&b'{') {
            i += 1;
            loop {
                i = skip_ws(b, i);
                if b.get(i) == Some(&b'}') {
                    return i + 1;
                }
                i = parse_tree(b, i, path.clone(), out);
                i = skip_ws(b, i);
                match b.get(i) {
                    Some(b',') => i += 1,
                    Some(b'}') => return i + 1,
                    _ => return i,
                }
            }
        }
        if b.get(i) == Some(&b'*') {
            path.push("*".into());
            out.push(path);
            return i + 1;
        }
        let (id, j) = ident_at(b, i);
        if id.is_empty() {
            out.push(path);
            return i;
        }
        path.push(id);
        i = j;
        if b.get(i) == Some(&b':') && b.get(i + 1) == Some(&b':') {
            i += 2;
        } else {
            out.push(path);
            return i;
        }
    }
}

/// Every path a module names, made absolute (`super::` resolved against the module, and a path
/// that starts with one of `children`, the module's own submodules, relative to it).
fn paths_in(module: &str, children: &[String], text: &str) -> Vec<Vec<String>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let here: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if boundary && b[i..].starts_with(b"crate::") {
            i = parse_tree(b, i + 7, Vec::new(), &mut out);
        } else if boundary && b[i..].starts_with(b"super::") {
            // In a mod.rs, `super` is the folder's parent; elsewhere the file's parent module.
            let mut base = here.clone();
            let mut j = i;
            while b[j..].starts_with(b"super::") {
                base.pop();
                j += 7;
            }
            i = parse_tree(b, j, base, &mut out);
        } else if let Some(c) = children.iter().find(|c| {
            boundary
                && !(i >= 2 && &b[i - 2..i] == b"::")
                && b[i..].starts_with(c.as_bytes())
                && b[i + c.len()..].starts_with(b"::")
        }) {
            let mut base = here.clone();
            base.push(c.clone());
            i = parse_tree(b, i + c.len() + 2, base, &mut out);
        } else {
            i += 1;
        }
    }
    out
}

/// Names a module defines at its top level.
fn definitions(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let l = line.trim_start();
        let l = l
            .strip_prefix("pub(crate) ")
            .or_else(|| l.strip_prefix("pub "))
            .unwrap_or(l);
        for kw in [
            "struct ",
            "enum ",
            "fn ",
            "async fn ",
            "type ",
            "const ",
            "static ",
            "trait ",
            "mod ",
        ] {
            if let Some(rest) = l.strip_prefix(kw) {
                let (id, _) = ident_at(rest.as_bytes(), 0);
                if !id.is_empty() {
                    out.insert(id);
                }
            }
        }
        if let Some(rest) = l.strip_prefix("macro_rules! ") {
            out.insert(ident_at(rest.as_bytes(), 0).0);
        }
    }
    out
}

struct House {
    modules: BTreeMap<String, String>,
    /// Per module: the names of its own submodules.
    children: BTreeMap<String, Vec<String>>,
    defs: BTreeMap<String, BTreeSet<String>>,
    /// Per module: name it re-exports → the path it re-exports.
    reexports: BTreeMap<String, Vec<(String, Vec<String>)>>,
}

impl House {
    fn read() -> House {
        House::of(read_modules())
    }

    fn of(modules: BTreeMap<String, String>) -> House {
        let defs = modules
            .iter()
            .map(|(m, t)| (m.clone(), definitions(t)))
            .collect();
        let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in modules.keys() {
            let mut kids = Vec::new();
            for c in modules.keys() {
                let rest = if m.is_empty() {
                    Some(c.as_str())
                } else {
                    c.strip_prefix(m.as_str())
                        .and_then(|r| r.strip_prefix("::"))
                };
                if let Some(r) = rest.filter(|r| !r.is_empty() && !r.contains("::")) {
                    kids.push(r.to_string());
                }
            }
            children.insert(m.clone(), kids);
        }
        let mut reexports = BTreeMap::new();
        for (m, t) in &modules {
            let mut list = Vec::new();
            for (k, _) in t.match_indices("pub use ") {
                let stmt = t[k + 8..].split(';').next().unwrap_or("");
                let stmt = stmt.strip_prefix("self::").unwrap_or(stmt);
                for p in paths_in(m, &children[m], stmt) {
                    if let Some(name) = p.last() {
                        list.push((name.clone(), p));
                    }
                }
            }
            reexports.insert(m.clone(), list);
        }
        House {
            modules,
            children,
            defs,
            reexports,
        }
    }

    /// The file that defines what `path` names.
    fn resolve(&self, path: &[String], depth: usize) -> Option<String> {
        // The longest prefix that is a module.
        let mut k = path.len();
        let module = loop {
            let m = path[..k].join("::");
            if self.modules.contains_key(&m) {
                break m;
            }
            if k == 0 {
                return None;
            }
            k -= 1;
        };
        let Some(name) = path.get(k) else {
            return Some(module);
        };
        if depth > 8 || self.defs[&module].contains(name) {
            return Some(module);
        }
        for (exported, from) in &self.reexports[&module] {
            if exported == name && from.as_slice() != path {
                return self.resolve(from, depth + 1).or(Some(module));
            }
        }
        // A glob re-export: the child that defines the name.
        for (exported, from) in &self.reexports[&module] {
            if exported == "*" {
                let mut p = from[..from.len() - 1].to_vec();
                p.push(name.clone());
                if let Some(to) = self.resolve(&p, depth + 1) {
                    if self.defs.get(&to).is_some_and(|d| d.contains(name)) {
                        return Some(to);
                    }
                }
            }
        }
        Some(module)
    }

    /// Arrows between files: (from, to) → the paths that make it.
    fn arrows(&self) -> BTreeMap<(String, String), BTreeSet<String>> {
        let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for (m, t) in &self.modules {
            for p in paths_in(m, &self.children[m], t) {
                let Some(to) = self.resolve(&p, 0) else {
                    continue;
                };
                // A module above its own children (declaring them) is no arrow; a path into a
                // child through its parent is an arrow to the child.
                if &to != m {
                    out.entry((m.clone(), to)).or_default().insert(p.join("::"));
                }
            }
        }
        out
    }
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or("")
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&top(module)))
}

/// Strongly connected components of more than one file (Tarjan).
fn cycles(
    nodes: &BTreeSet<String>,
    edges: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        if let Some(ws) = t.edges.get(v) {
            for w in ws {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let l = t.low[w].min(t.low[v]);
                    t.low.insert(v, l);
                } else if t.on.contains(w) {
                    let l = t.index[w].min(t.low[v]);
                    t.low.insert(v, l);
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut c = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                c.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if c.len() > 1 {
                c.sort();
                t.out.push(c);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for n in nodes {
        if !t.index.contains_key(n.as_str()) {
            visit(&mut t, n);
        }
    }
    t.out
}

#[test]
fn every_top_level_module_has_a_layer() {
    let house = House::read();
    let missing: BTreeSet<&str> = house
        .modules
        .keys()
        .map(|m| top(m))
        .filter(|m| !m.is_empty() && layer_of(m).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "give these modules a layer in LAYERS (harness/tests/layers.rs): {missing:?}"
    );
}

#[test]
fn layers_only_point_down() {
    let house = House::read();
    let mut wrong = Vec::new();
    for ((from, to), names) in house.arrows() {
        let (Some(a), Some(b)) = (layer_of(&from), layer_of(&to)) else {
            continue;
        };
        if b > a {
            wrong.push(format!(
                "{from} ({}) -> {to} ({}): {}",
                LAYERS[a].0,
                LAYERS[b].0,
                names.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows that point up:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn no_module_imports_itself_back() {
    let house = House::read();
    let arrows = house.arrows();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in arrows.keys() {
        if !from.is_empty() && !to.is_empty() {
            edges.entry(from.clone()).or_default().insert(to.clone());
        }
    }
    let nodes: BTreeSet<String> = house.modules.keys().cloned().collect();
    let found = cycles(&nodes, &edges);
    let mut text = String::new();
    for c in &found {
        text.push_str(&format!("\ncycle of {} files:\n", c.len()));
        for ((from, to), names) in &arrows {
            if c.contains(from) && c.contains(to) {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                text.push_str(&format!("  {from} -> {to}: {}\n", names.join(", ")));
            }
        }
    }
    assert!(found.is_empty(), "{text}");
}

/// The check itself can fail: a made-up house with a cycle and an upward arrow is caught.
#[test]
fn the_checks_catch_a_cycle() {
    let a = "use crate::b::B;\npub struct A;\n";
    let b = "pub struct B;\nfn f() -> crate::a::A { todo!() }\n";
    let mut modules = BTreeMap::new();
    modules.insert("a".to_string(), strip(a));
    modules.insert("b".to_string(), strip(b));
    let house = House::of(modules);
    let arrows = house.arrows();
    assert!(arrows.contains_key(&("a".into(), "b".into())), "{arrows:?}");
    assert!(arrows.contains_key(&("b".into(), "a".into())), "{arrows:?}");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (f, t) in arrows.keys() {
        edges.entry(f.clone()).or_default().insert(t.clone());
    }
    let nodes = house.modules.keys().cloned().collect();
    assert_eq!(
        cycles(&nodes, &edges),
        vec![vec!["a".to_string(), "b".to_string()]]
    );
}
