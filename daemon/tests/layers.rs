//! The daemon's layers, checked: every `crate::`, `super::` and `self::`
//! path in daemon/src (and `portd::` in main.rs) is an arrow from the
//! module that names it to the module it names, and every arrow must point
//! down the layers below, or to a leaf; no arrows may go round in a cycle.
//! A failure names the arrow. Rerun with `cargo test -p portd --test layers`.
//!
//! Arrows between a module and its own submodules are not checked: a parent
//! declares and re-exports its children, and they use what it defines.
//! Everything else is: siblings inside one module as much as the layers.
//! Only `store` may name the SQLite libraries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, top first. A module may import from layers below its own
/// and from leaves, never from its own layer or above.
const LAYERS: &[&[&str]] = &[
    &["main"],
    &["lib"],
    &["http", "maintain", "proxy"],
    &["leases"],
    &["reaper", "watch", "grant"],
    &["owner", "probe"],
    &["procs", "store", "peer"],
];

/// The SQLite libraries, which only `store` may name.
const SQLITE: &[&str] = &["sqlx", "rusqlite"];

/// Small modules any layer may use; they use only each other.
const LEAVES: &[&str] = &[
    "lease", "time", "config", "task", "lockfile", "socket", "pidfd",
];

#[test]
fn every_import_in_the_daemon_points_down_and_none_goes_round() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_tree(&src, &src, &mut files);
    assert!(
        files.len() > 20,
        "read only {} files of {}",
        files.len(),
        src.display()
    );
    let problems = check(&files);
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn the_checker_names_arrows_up_sideways_and_round_sqlite_outside_store_and_unplaced_modules() {
    let files = tree(&[
        (
            "lib.rs",
            "pub mod leases; pub mod reaper; pub mod watch; pub mod procs;",
        ),
        (
            "leases/mod.rs",
            "use crate::reaper::Reaper;\nmod table;\nimpl From<sqlx::Error> for LeaseError {}",
        ),
        ("leases/table.rs", "use super::Leases;"),
        // Up: the reaper imports from leases, which imports the reaper.
        (
            "reaper/mod.rs",
            "use crate::{leases::{LeaseError, Leases}, procs};\n\
             pub mod signal;",
        ),
        // Sideways: reaper and watch share a layer.
        (
            "reaper/signal.rs",
            "fn f() { crate::watch::pidfd_open(1); }",
        ),
        (
            "watch.rs",
            "// crate::leases in a comment is no arrow\nlet s = \"crate::leases\";",
        ),
        // A cycle inside one module, through relative paths.
        ("procs/mod.rs", "pub mod holders; pub mod sockdiag;"),
        (
            "procs/holders.rs",
            "use super::sockdiag::listening_sockets;",
        ),
        (
            "procs/sockdiag.rs",
            "use super::{holders::ListenSocket, read_stat};",
        ),
        ("extra.rs", ""),
    ]);
    let problems = check(&files);
    let expected = [
        "`extra` (extra.rs) has no layer: add it to LAYERS or LEAVES in daemon/tests/layers.rs",
        "sideways: `reaper::signal` (reaper/signal.rs) imports `crate::watch::pidfd_open` from `watch`, on its own layer",
        "sqlite: `leases` (leases/mod.rs) names `sqlx`: only `store` may",
        "up: `reaper` (reaper/mod.rs) imports `crate::leases::LeaseError` from `leases`, a higher layer",
        "up: `reaper` (reaper/mod.rs) imports `crate::leases::Leases` from `leases`, a higher layer",
        "cycle: leases -> reaper -> leases",
        "cycle: procs::holders -> procs::sockdiag -> procs::holders",
    ];
    assert_eq!(problems, expected, "\n{}\n", problems.join("\n"));
}

#[test]
fn leaves_use_only_leaves_and_main_may_use_the_library() {
    let files = tree(&[
        (
            "lib.rs",
            "pub mod time; pub mod lease; pub mod store; pub mod http;",
        ),
        ("main.rs", "use portd::{http::router, Config};"),
        ("time.rs", ""),
        (
            "lease.rs",
            "use crate::time::now_ms;\nuse crate::store::Store;",
        ),
        ("store/mod.rs", "use crate::time::now_ms;"),
        ("http/mod.rs", "use crate::store::Store;\nuse crate::time;"),
    ]);
    assert_eq!(
        check(&files),
        [
            "leaf: `lease` (lease.rs) imports `crate::store::Store` from `store`: a leaf may use only leaves",
        ]
    );
}

/// One source file: its path under src/ and its text.
struct File {
    path: String,
    text: String,
}

fn tree(files: &[(&str, &str)]) -> Vec<File> {
    files
        .iter()
        .map(|(path, text)| File {
            path: path.to_string(),
            text: text.to_string(),
        })
        .collect()
}

fn read_tree(root: &Path, dir: &Path, files: &mut Vec<File>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_tree(root, &path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(File {
                path: path.strip_prefix(root).unwrap().display().to_string(),
                text: std::fs::read_to_string(&path).unwrap(),
            });
        }
    }
}

/// The module a file holds, as `a::b` ("" for lib.rs, "main" for main.rs).
fn module_of(path: &str) -> String {
    let path = path.strip_suffix(".rs").unwrap_or(path);
    let path = path.strip_suffix("/mod").unwrap_or(path);
    match path {
        "lib" => String::new(),
        _ => path.replace('/', "::"),
    }
}

/// The layer a module's top-level module sits on (leaves: `None`).
fn layer_of(module: &str) -> Result<Option<usize>, ()> {
    let top = match module.split("::").next() {
        Some("") | None => "lib",
        Some(top) => top,
    };
    if LEAVES.contains(&top) {
        return Ok(None);
    }
    LAYERS
        .iter()
        .position(|layer| layer.contains(&top))
        .map(Some)
        .ok_or(())
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or("")
}

/// Whether `a` is `b`, or one contains the other. The crate root contains
/// nothing here: an import of what it defines is an arrow to `lib`.
fn related(a: &str, b: &str) -> bool {
    let inside = |inner: &str, outer: &str| {
        !outer.is_empty() && (inner == outer || inner.starts_with(&format!("{outer}::")))
    };
    a == b || inside(a, b) || inside(b, a)
}

/// Every problem with the arrows between `files`, sorted.
fn check(files: &[File]) -> Vec<String> {
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&f.path)).collect();
    let mut problems = BTreeSet::new();
    let mut arrows: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let from = module_of(&file.path);
        let Ok(from_layer) = layer_of(&from) else {
            problems.insert(format!(
                "`{from}` ({}) has no layer: add it to LAYERS or LEAVES in daemon/tests/layers.rs",
                file.path
            ));
            continue;
        };
        if top(&from) != "store" {
            let tokens = tokens(&strip(&file.text));
            for library in SQLITE.iter().filter(|l| tokens.iter().any(|t| t == *l)) {
                problems.insert(format!(
                    "sqlite: `{from}` ({}) names `{library}`: only `store` may",
                    file.path
                ));
            }
        }
        for (base, path) in paths(&file.text, &from) {
            let Some(to) = resolve(&modules, &base, &path) else {
                continue;
            };
            if related(&from, &to) {
                continue;
            }
            arrows.entry(from.clone()).or_default().insert(to.clone());
            let mut full: Vec<&str> = base.split("::").filter(|s| !s.is_empty()).collect();
            full.extend(path.iter().map(String::as_str));
            let shown = format!("crate::{}", full.join("::"));
            // A module without a layer is reported for its own file.
            let to_layer = layer_of(&to).unwrap_or(None);
            let (kind, why) = match (from_layer, to_layer) {
                (None, Some(_)) => ("leaf", ": a leaf may use only leaves"),
                (Some(a), Some(b)) if b < a => ("up", ", a higher layer"),
                (Some(a), Some(b)) if b == a && top(&from) != top(&to) => {
                    ("sideways", ", on its own layer")
                }
                _ => continue,
            };
            problems.insert(format!(
                "{kind}: `{from}` ({}) imports `{shown}` from `{}`{why}",
                file.path,
                top(&to),
            ));
        }
    }
    for cycle in cycles(&arrows) {
        problems.insert(format!("cycle: {}", cycle.join(" -> ")));
    }
    let mut problems: Vec<String> = problems.into_iter().collect();
    // Modules without a layer first, then arrows, then cycles.
    problems.sort_by_key(|p| {
        (
            !p.contains("has no layer"),
            p.starts_with("cycle"),
            p.clone(),
        )
    });
    problems
}

/// The module a path names: the longest prefix of it that is a module
/// (`None` for paths outside the crate). `base` is where a relative path
/// starts, already resolved.
fn resolve(modules: &BTreeSet<String>, base: &str, path: &[String]) -> Option<String> {
    let mut full: Vec<&str> = base.split("::").filter(|s| !s.is_empty()).collect();
    full.extend(path.iter().map(String::as_str));
    (0..=full.len())
        .rev()
        .map(|n| full[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// Every crate path in `text` (a file of module `module`), as the module it
/// starts from and the segments after it.
fn paths(text: &str, module: &str) -> Vec<(String, Vec<String>)> {
    let tokens = tokens(&strip(text));
    let mut found = Vec::new();
    // Inline `mod name { ... }` blocks shift what `self` and `super` mean.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let here = {
            let mut m: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
            m.extend(inline.iter().map(|(name, _)| name.as_str()));
            m
        };
        match tokens[i].as_str() {
            "mod" if tokens.get(i + 2).is_some_and(|t| t == "{") => {
                depth += 1;
                inline.push((tokens[i + 1].clone(), depth));
                i += 3;
                continue;
            }
            "{" => depth += 1,
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth -= 1;
            }
            "use" => {
                let end = tokens[i..]
                    .iter()
                    .position(|t| t == ";")
                    .map_or(tokens.len(), |n| i + n);
                let mut trees = Vec::new();
                use_tree(&tokens[i + 1..end], &mut Vec::new(), &mut trees);
                for tree in trees {
                    found.extend(absolute(&here, module, &tree));
                }
                i = end + 1;
                continue;
            }
            "crate" | "super" | "self" | "portd"
                if tokens.get(i + 1).is_some_and(|t| t == "::") =>
            {
                let mut path = vec![tokens[i].clone()];
                let mut j = i + 1;
                while tokens.get(j).is_some_and(|t| t == "::")
                    && tokens.get(j + 1).is_some_and(|t| is_ident(t))
                {
                    path.push(tokens[j + 1].clone());
                    j += 2;
                }
                found.extend(absolute(&here, module, &path));
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// `path` (starting with `crate`, `super`, `self` or, in main.rs, `portd`)
/// from the module `here` (inside the file of `module`), as the module it
/// starts from and the segments after that.
fn absolute(here: &[&str], module: &str, path: &[String]) -> Option<(String, Vec<String>)> {
    let (mut at, mut rest): (Vec<&str>, &[String]) = match path.first()?.as_str() {
        "portd" if module == "main" => (Vec::new(), &path[1..]),
        // main.rs is a crate of its own: its `crate` is not the library.
        _ if module == "main" => return None,
        "crate" => (Vec::new(), &path[1..]),
        "self" => (here.to_vec(), &path[1..]),
        "super" => (here.to_vec(), path),
        _ => return None,
    };
    while rest.first().is_some_and(|s| s == "super") {
        at.pop()?;
        rest = &rest[1..];
    }
    Some((at.join("::"), rest.to_vec()))
}

/// The paths a use tree (the tokens between `use` and `;`) names, each
/// with `prefix` before it.
fn use_tree(tokens: &[String], prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut i = 0;
    let start = prefix.len();
    while i < tokens.len() {
        let t = tokens[i].as_str();
        if t == "{" {
            // Split the group at top-level commas.
            let mut level = 0;
            let mut from = i + 1;
            for j in i + 1..tokens.len() {
                match tokens[j].as_str() {
                    "{" => level += 1,
                    "}" if level == 0 => {
                        if from < j {
                            use_tree(&tokens[from..j], prefix, out);
                        }
                        break;
                    }
                    "}" => level -= 1,
                    "," if level == 0 => {
                        use_tree(&tokens[from..j], prefix, out);
                        from = j + 1;
                    }
                    _ => {}
                }
            }
            prefix.truncate(start);
            return;
        }
        if t == "as" {
            break;
        }
        if is_ident(t) || t == "*" {
            prefix.push(t.to_string());
        }
        i += 1;
    }
    if prefix.len() > start {
        out.push(prefix.clone());
    }
    prefix.truncate(start);
}

fn is_ident(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::` and single punctuation characters.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
            i += 1;
        }
    }
    out
}

/// `text` without comments, string literals and character literals, which
/// may spell paths that are no imports.
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut level = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    level += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    level -= 1;
                    i += 2;
                    if level == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&chars, i) {
            // r"...", r#"..."#
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}'), else a lifetime.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// One cycle for every group of modules that can reach each other (a
/// strongly connected component of `arrows`), starting and ending at its
/// first module: the shortest way round through it.
fn cycles(arrows: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(at) = stack.pop() {
            for next in arrows.get(&at).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        arrows.keys().map(|m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for (module, reached) in &reaches {
        if done.contains(*module) || !reached.contains(*module) {
            continue;
        }
        let group: BTreeSet<&String> = reached
            .iter()
            .filter(|other| reaches.get(other).is_some_and(|r| r.contains(*module)))
            .collect();
        done.extend(group.iter().map(|m| (*m).clone()));
        // Breadth first from `module` back to itself, inside the group.
        let mut back: BTreeMap<&String, &String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([*module]);
        'search: while let Some(at) = queue.pop_front() {
            for next in arrows.get(at).into_iter().flatten() {
                if next == *module {
                    let mut cycle = vec![(*module).clone()];
                    let mut step = at;
                    while step != *module {
                        cycle.push(step.clone());
                        step = back[step];
                    }
                    cycle.push((*module).clone());
                    cycle.reverse();
                    found.push(cycle);
                    break 'search;
                }
                if group.contains(next) && !back.contains_key(next) {
                    back.insert(next, at);
                    queue.push_back(next);
                }
            }
        }
    }
    found
}
