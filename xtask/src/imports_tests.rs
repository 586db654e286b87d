//! The cycle finder, the `use` tree reader and the edges on small inputs,
//! and the workspace itself without import circles.

use super::*;
use crate::shell::workspace_root;

/// `(from, to)` file pairs.
type Edges<'a> = &'a [(&'a str, &'a str)];

fn graph(edges: Edges) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::<String, BTreeSet<String>>::new();
    for (from, to) in edges {
        graph.entry((*from).to_owned()).or_default().insert((*to).to_owned());
        graph.entry((*to).to_owned()).or_default();
    }
    graph
}

#[test]
fn find_cycle_reports_the_files_of_a_circle_in_order() {
    let cases: &[(&str, Edges, Option<&[&str]>)] = &[
        ("no edges", &[], None),
        ("a chain", &[("a", "b"), ("b", "c")], None),
        ("a diamond", &[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")], None),
        ("a file naming itself", &[("a", "a"), ("a", "b")], None),
        ("two files naming each other", &[("a", "b"), ("b", "a")], Some(&["a", "b", "a"])),
        ("a circle of three", &[("a", "b"), ("b", "c"), ("c", "a")], Some(&["a", "b", "c", "a"])),
        ("a circle below a chain", &[("a", "b"), ("b", "c"), ("c", "d"), ("d", "c")], Some(&["c", "d", "c"])),
    ];
    for (name, edges, expected) in cases {
        let expected = expected.map(|files| files.iter().map(|file| file.to_string()).collect::<Vec<_>>());
        assert_eq!(find_cycle(&graph(edges)), expected, "{name}");
    }
}

/// `(path, binding)` of each leaf of a `use` tree.
type Leaves<'a> = &'a [(&'a str, Option<&'a str>)];

fn leaves(source: &str) -> Vec<(String, Option<String>)> {
    let tokens: Vec<TokenTree> = TokenStream::from_str(source).unwrap().into_iter().collect();
    use_leaves(&tokens).into_iter().map(|leaf| (leaf.segments.join("::"), leaf.binding)).collect()
}

#[test]
fn use_trees_are_split_into_the_paths_they_name() {
    let cases: &[(&str, Leaves)] = &[
        ("crate::a::b", &[("crate::a::b", Some("b"))]),
        ("super::x as y", &[("super::x", Some("y"))]),
        ("crate::{a, b::c}", &[("crate::a", Some("a")), ("crate::b::c", Some("c"))]),
        ("super::proxy::{self, Proxy}", &[("super::proxy", Some("proxy")), ("super::proxy::Proxy", Some("Proxy"))]),
        ("super::*", &[("super", None)]),
        ("crate::a::{b::{c, d}, e::*}", &[("crate::a::b::c", Some("c")), ("crate::a::b::d", Some("d")), ("crate::a::e", None)]),
        ("::std::fmt", &[]),
    ];
    for (source, expected) in cases {
        let expected: Vec<_> = expected.iter().map(|(path, binding)| (path.to_string(), binding.map(str::to_owned))).collect();
        assert_eq!(leaves(source), expected, "use {source}");
    }
}

#[test]
fn edges_go_to_the_file_where_a_named_item_lives() {
    let files: &[(&str, &str)] = &[
        // `mod` and `pub use` are no edges; `b::go` goes through a child.
        ("lib.rs", "mod a; mod b; pub use b::Thing; pub struct Root; fn main() { b::go(); }"),
        // Through the root's re-export to b.rs; `Root` lives in lib.rs.
        ("a.rs", "use crate::{Thing, Root}; #[path = \"a_tests.rs\"] mod tests;"),
        ("a_tests.rs", "use super::*;"),
        // Paths inside inline modules, function bodies and macro arguments.
        ("b.rs", "pub struct Thing; mod c; mod inner { use super::c::Deep; } fn go() { assert!(crate::b::c::f()); }"),
        ("b/c.rs", "pub struct Deep; pub fn f() -> bool { self::g() } fn g() -> bool { true }"),
    ];
    let dir = std::env::temp_dir().join(format!("xtask-imports-{}", std::process::id()));
    for (file, text) in files {
        std::fs::create_dir_all(dir.join(file).parent().unwrap()).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }
    let tree = ModuleTree::read(&dir.join("lib.rs"));
    std::fs::remove_dir_all(&dir).unwrap();
    let mut edges: Vec<(String, String, String)> = tree
        .edges()
        .into_iter()
        .map(|(from, to, via)| {
            let name = |file: PathBuf| file.strip_prefix(&dir).unwrap().display().to_string();
            (name(from), name(to), via)
        })
        .collect();
    edges.sort();
    let expected = [
        ("a.rs", "b.rs", "crate::Thing"),
        ("a.rs", "lib.rs", "crate::Root"),
        ("a_tests.rs", "a.rs", "super"),
        ("b.rs", "b/c.rs", "crate::b::c::f"),
        ("b.rs", "b/c.rs", "super::c::Deep"),
        ("lib.rs", "b.rs", "b::go"),
    ];
    let expected: Vec<_> = expected.iter().map(|(from, to, via)| (from.to_string(), to.to_string(), via.to_string())).collect();
    assert_eq!(edges, expected);
}

#[test]
fn no_source_file_imports_one_that_imports_it_back() {
    let graph = workspace_graph(&workspace_root());
    assert!(graph.len() > 50, "the scan found only {} files: is the workspace root right?", graph.len());
    let files = graph
        .iter()
        .map(|(from, to)| (from.clone(), to.keys().cloned().collect()))
        .collect();
    if let Some(cycle) = find_cycle(&files) {
        let steps: Vec<String> = cycle.windows(2).map(|pair| format!("{} -> {} ({})", pair[0], pair[1], graph[&pair[0]][&pair[1]])).collect();
        panic!("import circle:\n  {}", steps.join("\n  "));
    }
}
