//! The store's inside stays layered: every file belongs to a layer, a layer uses only the layers
//! listed below it in [`LAYERS`], and no files import each other in a cycle.
//!
//! Reads the crate's sources (`src/**/*.rs`), extracts the paths each file uses into the crate
//! (`use crate::…`, `use super::…`, `use child::…` and the same paths written inline in code),
//! resolves each to the file that defines the item (following `use` re-exports, as `crate::Error`
//! leads through `lib.rs` and `names/mod.rs` to `names/error.rs`), and checks the resulting file
//! graph. A re-export (`pub use` and the like) counts as a use only if the file also names the item
//! in its own code, so a parent module may re-export its children's items. Comments, string
//! literals and test-only code (`#[cfg(test)]` items and the files they declare) are left out:
//! tests may drive a layer through the whole store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The layers, bottom up: a name, the crate's top-level modules it holds (`""` is `lib.rs`), and
/// the layers it may use (besides itself). ARCHITECTURE.md describes them.
const LAYERS: &[(&str, &[&str], &[&str])] = &[
    ("names", &["names"], &[]),
    ("odb", &["odb"], &["names"]),
    ("tree", &["tree"], &["names", "odb"]),
    ("refs", &["refs"], &["names", "odb"]),
    (
        "api",
        &[
            "",
            "state",
            "snapshot",
            "commit",
            "transaction",
            "store",
            "compact",
            "temp_store",
        ],
        &["names", "odb", "tree", "refs"],
    ),
];

/// A source file of the crate.
struct SourceFile {
    /// Relative to `src/`.
    path: PathBuf,
    /// Its module path (`[]` for `lib.rs`).
    module: Vec<String>,
    /// The source with comments, literals and test-only items blanked out.
    code: String,
}

/// One `use` of a file: the absolute path it names, and the name it brings into scope (`None` for
/// a glob).
struct UseItem {
    path: Vec<String>,
    name: Option<String>,
    public: bool,
}

/// Replaces comments, string and character literals with spaces (keeping line breaks), so that
/// neither paths in comments nor braces in strings are taken for code.
fn blank_comments_and_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
        {
            // A raw string: r"…", r#"…"#.
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
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &skipped in &chars[i..j.min(chars.len())] {
                out.push(blank(skipped));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}'), or else a lifetime.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                for _ in i..=j.min(chars.len() - 1) {
                    out.push(' ');
                }
                i = j + 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                out.push_str("   ");
                i += 3;
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

/// The index just past the item starting at `from`: its `;`, or the brace closing its body.
fn item_end(code: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < code.len() {
        match code[i] {
            b';' => return i + 1,
            b'{' => {
                let mut depth = 0;
                while i < code.len() {
                    match code[i] {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                return i + 1;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                return i;
            }
            _ => i += 1,
        }
    }
    i
}

/// Blanks out every `#[cfg(test)]` item; returns the names of the `mod x;` among them (files that
/// are test-only).
fn remove_test_items(code: &mut String) -> Vec<String> {
    const ATTRIBUTE: &str = "#[cfg(test)]";
    let mut test_modules = Vec::new();
    while let Some(at) = code.find(ATTRIBUTE) {
        let end = item_end(code.as_bytes(), at + ATTRIBUTE.len());
        let item: Vec<&str> = code[at + ATTRIBUTE.len()..end]
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ';'))
            .filter(|word| !word.is_empty())
            .collect();
        if let Some(position) = item.iter().position(|word| *word == "mod")
            && let Some(name) = item.get(position + 1)
            && let Some(name) = name.strip_suffix(';')
        {
            test_modules.push(name.to_owned());
        }
        let blanked: String = code[at..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        code.replace_range(at..end, &blanked);
    }
    test_modules
}

/// Splits a use tree (`a::{b, c::{d as e}, self}`) into `(path, name)` pairs; `name` is `None` for
/// a glob.
fn expand_use_tree(tree: &str) -> Vec<(Vec<String>, Option<String>)> {
    fn split_top_level(list: &str) -> Vec<&str> {
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (i, c) in list.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&list[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&list[start..]);
        parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
    }
    fn walk(prefix: &[String], tree: &str, out: &mut Vec<(Vec<String>, Option<String>)>) {
        let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
        let tree = tree.trim();
        if let Some(brace) = tree.find('{') {
            let head = tree[..brace].trim_end_matches("::").trim();
            let mut path = prefix.to_vec();
            path.extend(
                head.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
            let inner = &tree[brace + 1..tree.rfind('}').expect("a closing brace")];
            for part in split_top_level(inner) {
                walk(&path, part, out);
            }
            return;
        }
        let (path_text, alias) = match tree.split_once(" as ") {
            Some((path, alias)) => (path.trim(), Some(alias.trim().to_owned())),
            None => (tree, None),
        };
        let mut path = prefix.to_vec();
        path.extend(path_text.split("::").map(|s| s.trim().to_owned()));
        match path.last().map(String::as_str) {
            Some("*") => {
                path.pop();
                out.push((path, None));
            }
            Some("self") => {
                path.pop();
                let name = alias.or_else(|| path.last().cloned());
                out.push((path, name));
            }
            _ => {
                let name = alias.or_else(|| path.last().cloned());
                out.push((path, name));
            }
        }
    }
    let mut out = Vec::new();
    walk(&[], tree, &mut out);
    out
}

/// Makes a path written in `module` absolute: `crate::`, `super::`, `self::` and paths starting
/// with a child module; `None` for paths outside the crate (`std::`, `gix::`, …).
fn absolute(
    module: &[String],
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let first = path.first()?;
    let mut base: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "self" | "super" => module.to_vec(),
        _ => {
            let mut child = module.to_vec();
            child.push(first.clone());
            if !modules.contains(&child) {
                return None;
            }
            module.to_vec()
        }
    };
    let mut rest = if first == "crate" || first == "self" {
        &path[1..]
    } else {
        path
    };
    while let Some(("super", tail)) = rest.split_first().map(|(h, t)| (h.as_str(), t)) {
        base.pop();
        rest = tail;
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The `use` items of a file, with absolute paths.
fn use_items(file: &SourceFile, modules: &BTreeSet<Vec<String>>) -> Vec<UseItem> {
    let mut items = Vec::new();
    let code = &file.code;
    let mut search = 0;
    while let Some(found) = code[search..].find("use ") {
        let at = search + found;
        search = at + 4;
        // `use` is a keyword: outside comments and literals it only starts a use item.
        if at > 0
            && (code.as_bytes()[at - 1].is_ascii_alphanumeric() || code.as_bytes()[at - 1] == b'_')
        {
            continue;
        }
        let before = code[..at].trim_end();
        let public = before.ends_with("pub")
            || before.ends_with(')')
                && before
                    .rfind("pub(")
                    .is_some_and(|pub_at| !before[pub_at..].contains(['{', ';', '}']));
        let Some(end) = code[at..].find(';') else {
            continue;
        };
        for (path, name) in expand_use_tree(&code[at + 4..at + end]) {
            if let Some(path) = absolute(&file.module, &path, modules) {
                items.push(UseItem { path, name, public });
            }
        }
    }
    items
}

/// Paths into the crate written inline in code (`crate::a::b`, `super::c`), made absolute.
fn inline_paths(file: &SourceFile, modules: &BTreeSet<Vec<String>>) -> Vec<Vec<String>> {
    let code = without_use_items(&file.code);
    let bytes = code.as_bytes();
    let mut paths = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        let mut search = 0;
        while let Some(found) = code[search..].find(start) {
            let at = search + found;
            search = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            if at >= 2 && &code[at - 2..at] == "::" {
                continue; // The tail of a longer path (`super::super::x`), already taken.
            }
            let mut end = at;
            while end < bytes.len()
                && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b':')
            {
                end += 1;
            }
            let path: Vec<String> = code[at..end]
                .trim_end_matches(':')
                .split("::")
                .map(str::to_owned)
                .collect();
            if let Some(path) = absolute(&file.module, &path, modules) {
                paths.push(path);
            }
        }
    }
    paths
}

/// The code with its `use` items and `mod` declarations blanked out.
fn without_use_items(code: &str) -> String {
    let mut out = code.to_owned();
    for keyword in ["use ", "mod "] {
        let mut search = 0;
        while let Some(found) = out[search..].find(keyword) {
            let at = search + found;
            search = at + keyword.len();
            if at > 0
                && (out.as_bytes()[at - 1].is_ascii_alphanumeric()
                    || out.as_bytes()[at - 1] == b'_')
            {
                continue;
            }
            let end = if keyword == "use " {
                out[at..].find(';')
            } else {
                out[at..].find([';', '{'])
            };
            let Some(end) = end else {
                continue;
            };
            if out.as_bytes()[at + end] != b';' {
                continue; // An inline module: its body is code.
            }
            let blanked = " ".repeat(end + 1);
            out.replace_range(at..at + end + 1, &blanked);
        }
    }
    out
}

/// Whether `name` appears as a word in `code`.
fn names_word(code: &str, name: &str) -> bool {
    let bytes = code.as_bytes();
    code.match_indices(name).any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + name.len()).copied();
        let word = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        !word(before) && !word(after)
    })
}

struct Crate {
    files: Vec<SourceFile>,
    by_module: HashMap<Vec<String>, usize>,
    modules: BTreeSet<Vec<String>>,
    uses: Vec<Vec<UseItem>>,
}

impl Crate {
    /// Reads the files under `src` that are compiled outside tests.
    fn read(src: &Path) -> Crate {
        let mut found = Vec::new();
        collect_files(src, src, &mut found);
        let mut files = Vec::new();
        let mut test_only: BTreeSet<Vec<String>> = BTreeSet::new();
        for path in found {
            let source = std::fs::read_to_string(src.join(&path)).expect("read a source file");
            let module = module_of(&path);
            let mut code = blank_comments_and_literals(&source);
            for name in remove_test_items(&mut code) {
                let mut child = module.clone();
                child.push(name);
                test_only.insert(child);
            }
            files.push(SourceFile { path, module, code });
        }
        files.retain(|file| !test_only.iter().any(|test| file.module.starts_with(test)));
        let by_module = files
            .iter()
            .enumerate()
            .map(|(index, file)| (file.module.clone(), index))
            .collect::<HashMap<_, _>>();
        let modules = by_module.keys().cloned().collect();
        let mut krate = Crate {
            files,
            by_module,
            modules,
            uses: Vec::new(),
        };
        krate.uses = krate
            .files
            .iter()
            .map(|file| use_items(file, &krate.modules))
            .collect();
        krate
    }

    /// The file defining what `path` names, following `use` items.
    fn resolve(&self, path: &[String], depth: usize) -> Option<usize> {
        assert!(depth < 32, "re-exports loop at {}", path.join("::"));
        let split = (0..=path.len())
            .rev()
            .find(|&n| self.by_module.contains_key(&path[..n]))?;
        let file = self.by_module[&path[..split]];
        let Some(name) = path.get(split) else {
            return Some(file);
        };
        for item in &self.uses[file] {
            if item.name.as_deref() == Some(name.as_str()) {
                let mut target = item.path.clone();
                target.extend(path[split + 1..].iter().cloned());
                return self.resolve(&target, depth + 1).or(Some(file));
            }
        }
        Some(file)
    }

    /// The files each file uses.
    fn graph(&self) -> Vec<BTreeMap<usize, String>> {
        let mut graph = vec![BTreeMap::new(); self.files.len()];
        for (index, file) in self.files.iter().enumerate() {
            let code = without_use_items(&file.code);
            let mut paths: Vec<Vec<String>> = Vec::new();
            for item in &self.uses[index] {
                // A re-export is a use only if the file's own code names the item.
                let used_here = match &item.name {
                    Some(name) => !item.public || names_word(&code, name),
                    None => true,
                };
                if used_here {
                    paths.push(item.path.clone());
                }
            }
            paths.extend(inline_paths(file, &self.modules));
            for path in paths {
                if let Some(target) = self.resolve(&path, 0)
                    && target != index
                {
                    graph[index]
                        .entry(target)
                        .or_insert_with(|| path.join("::"));
                }
            }
        }
        graph
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("list a source directory")
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_files(root, &path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path.strip_prefix(root).expect("under src").to_owned());
        }
    }
}

/// `lib.rs` → `[]`, `a.rs` and `a/mod.rs` → `[a]`, `a/b.rs` → `[a, b]`.
fn module_of(path: &Path) -> Vec<String> {
    let mut parts: Vec<String> = path
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    match last.as_str() {
        "lib.rs" | "mod.rs" => {}
        other => parts.push(other.trim_end_matches(".rs").to_owned()),
    }
    parts
}

fn layer_of(file: &SourceFile) -> usize {
    let top = file.module.first().map(String::as_str).unwrap_or("");
    LAYERS
        .iter()
        .position(|(_, modules, _)| modules.contains(&top))
        .unwrap_or_else(|| {
            panic!(
                "{} is in no layer: add its module `{top}` to LAYERS in tests/layers.rs",
                file.path.display()
            )
        })
}

/// Groups of files that import each other (strongly connected components of more than one file),
/// by Tarjan's algorithm.
fn cycles(graph: &[BTreeMap<usize, String>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        graph: &'a [BTreeMap<usize, String>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        found: Vec<Vec<usize>>,
    }
    fn visit(state: &mut State<'_>, node: usize) {
        state.index[node] = Some(state.next);
        state.low[node] = state.next;
        state.next += 1;
        state.stack.push(node);
        state.on_stack[node] = true;
        let targets: Vec<usize> = state.graph[node].keys().copied().collect();
        for target in targets {
            match state.index[target] {
                None => {
                    visit(state, target);
                    state.low[node] = state.low[node].min(state.low[target]);
                }
                Some(index) if state.on_stack[target] => {
                    state.low[node] = state.low[node].min(index);
                }
                Some(_) => {}
            }
        }
        if Some(state.low[node]) == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack[member] = false;
                component.push(member);
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: vec![None; graph.len()],
        low: vec![0; graph.len()],
        on_stack: vec![false; graph.len()],
        stack: Vec::new(),
        next: 0,
        found: Vec::new(),
    };
    for node in 0..graph.len() {
        if state.index[node].is_none() {
            visit(&mut state, node);
        }
    }
    state.found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The problems of the crate in `src`: upward imports, then cycles.
fn problems(src: &Path) -> (Crate, Vec<String>) {
    let krate = Crate::read(src);
    let graph = krate.graph();
    let mut problems = Vec::new();
    for (index, targets) in graph.iter().enumerate() {
        let from = &krate.files[index];
        let from_layer = layer_of(from);
        for (&target, path) in targets {
            let to = &krate.files[target];
            let to_layer = layer_of(to);
            let (from_name, _, allowed) = LAYERS[from_layer];
            let to_name = LAYERS[to_layer].0;
            if from_layer != to_layer && !allowed.contains(&to_name) {
                problems.push(format!(
                    "{} (layer {from_name}) uses {} (layer {to_name}) through `{path}`, which \
                     {from_name} may not use",
                    from.path.display(),
                    to.path.display()
                ));
            }
        }
    }
    for cycle in cycles(&graph) {
        let mut names: Vec<String> = cycle
            .iter()
            .map(|&file| krate.files[file].path.display().to_string())
            .collect();
        names.sort();
        problems.push(format!("files import each other: {}", names.join(", ")));
    }
    (krate, problems)
}

#[test]
fn layers_depend_only_downward_and_files_form_no_cycle() {
    let (krate, problems) = problems(&src());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The parse found what the crate is made of, so an empty list above means something.
    let graph = krate.graph();
    let edge = |from: &str, to: &str| {
        let file = |path: &str| {
            krate
                .files
                .iter()
                .position(|file| file.path == Path::new(path))
                .unwrap_or_else(|| panic!("no file {path}"))
        };
        graph[file(from)].contains_key(&file(to))
    };
    assert!(
        edge("transaction.rs", "refs/group.rs"),
        "Member, OpenTransaction"
    );
    assert!(edge("refs/group.rs", "odb/repo.rs"), "Repo");
    assert!(edge("tree/decoded.rs", "odb/object.rs"), "ObjectBytes");
    assert!(
        edge("odb/pack/thread.rs", "odb/pack/writer.rs"),
        "PackWriter"
    );
    assert!(
        edge("odb/repo.rs", "names/error.rs"),
        "crate::Error, via lib.rs"
    );
    assert!(
        !krate
            .files
            .iter()
            .any(|file| file.path.ends_with("tests.rs"))
    );
}

/// The checker itself, on a small crate with one upward import and one cycle.
#[test]
fn the_check_finds_upward_imports_and_cycles() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write a file");
    };
    write(
        "lib.rs",
        "mod names;\nmod odb;\nmod tree;\nmod refs;\npub use names::Error;\n",
    );
    write("names/mod.rs", "mod error;\npub use error::Error;\n");
    write("names/error.rs", "pub struct Error;\n");
    // Upward: the odb names a tree type, in code (not in a comment or string).
    write(
        "odb/mod.rs",
        "// crate::refs::Nothing in a comment\nmod a;\nmod b;\n\
         pub(crate) fn f(_: crate::tree::Tree) -> &'static str { \"crate::refs::X\" }\n",
    );
    // A cycle inside one layer: a.rs and b.rs use each other.
    write("odb/a.rs", "use super::b::B;\npub(crate) struct A(B);\n");
    write(
        "odb/b.rs",
        "use crate::Error;\npub(crate) struct B(Box<super::a::A>, Error);\n",
    );
    write(
        "tree/mod.rs",
        "pub(crate) struct Tree;\n#[cfg(test)]\nmod tests { use crate::refs::R; }\n",
    );
    write("refs/mod.rs", "pub(crate) struct R;\n");
    let (_, problems) = problems(dir.path());
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].starts_with("odb/mod.rs (layer odb) uses tree/mod.rs (layer tree)"),
        "{problems:#?}"
    );
    assert_eq!(problems[1], "files import each other: odb/a.rs, odb/b.rs");
}
