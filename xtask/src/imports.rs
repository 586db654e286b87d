//! No import circles: no source file of the workspace reaches, through the
//! modules it names, a file that names it back. A circle makes two files one
//! unit that can only be read, changed and tested together.
//!
//! Every crate's module tree is followed from its roots (`src/lib.rs`,
//! `src/main.rs`, `src/bin/*.rs`) through `mod` declarations (`#[path]`
//! honoured, inline `mod x { .. }` blocks are part of their file). A file
//! names another when one of its paths resolves to a module of that file:
//! `use` trees (grouped, `self`, globs), `crate::`, `super::` and `self::`
//! paths anywhere (macro arguments included), and bare paths through a child
//! module of the current one (`lb::forward` in a crate root). Test code counts
//! like any other code.
//!
//! How module roots count: `mod x;` is no edge (it only says where a child
//! is), and neither is a re-export (`pub use`, `pub(crate) use`): a path to
//! a re-exported name resolves to the module where the item really lives.
//! So a child using an item its parent only re-exports depends on the
//! item's own file, not on the parent; a child using an item its parent
//! itself defines (`super::SharedRoutes`) does depend on the parent, and that
//! is a circle only if the parent's own code uses the child back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

/// Files by workspace-relative path, each with the files it names and, for
/// each of those, one path that makes the edge (for the failure message).
pub type ImportGraph = BTreeMap<String, BTreeMap<String, String>>;

/// A circle in `graph` as its files in order, the first repeated at the end,
/// or `None`. Edges from a file to itself are not circles.
pub fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        OnPath,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        marks.insert(node, Mark::OnPath);
        path.push(node);
        for next in graph.get(node).into_iter().flatten().filter(|next| *next != node) {
            match marks.get(next.as_str()) {
                Some(Mark::OnPath) => {
                    let start = path.iter().position(|on_path| *on_path == next).expect("marked on the path");
                    let mut cycle: Vec<String> = path[start..].iter().map(|file| file.to_string()).collect();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = visit(next, graph, marks, path) {
                        return Some(cycle);
                    }
                }
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node.as_str())
            && let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

/// The file-level import graph of every crate under `workspace` (each
/// directory with a `Cargo.toml` and a `src/`).
pub fn workspace_graph(workspace: &Path) -> ImportGraph {
    let mut graph = ImportGraph::new();
    let mut crate_dirs: Vec<PathBuf> = std::fs::read_dir(workspace)
        .unwrap_or_else(|error| panic!("reading {}: {error}", workspace.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|dir| dir.join("Cargo.toml").is_file() && dir.join("src").is_dir())
        .collect();
    crate_dirs.sort();
    for src in crate_dirs.iter().map(|dir| dir.join("src")) {
        let mut roots: Vec<PathBuf> = ["lib.rs", "main.rs"].iter().map(|root| src.join(root)).collect();
        if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
            roots.extend(bins.map(|entry| entry.expect("a directory entry").path()));
        }
        for root in roots.into_iter().filter(|root| root.extension().is_some_and(|ext| ext == "rs") && root.is_file()) {
            let tree = ModuleTree::read(&root);
            let name = |file: &Path| file.strip_prefix(workspace).unwrap_or(file).display().to_string();
            for module in &tree.modules {
                graph.entry(name(&module.file)).or_default();
            }
            for (from, to, via) in tree.edges() {
                graph.entry(name(&from)).or_default().entry(name(&to)).or_insert(via);
            }
        }
    }
    graph
}

/// A path as written, at the module it is written in. One starting with a
/// plain name goes through a child module when the module has a child of
/// that name, else it is outside the crate.
struct Reference {
    module: usize,
    segments: Vec<String>,
    text: String,
}

struct Module {
    file: PathBuf,
    parent: Option<usize>,
    /// Where `mod child;` looks for the child's file.
    children_dir: PathBuf,
    children: BTreeMap<String, usize>,
    /// Name to the path it re-exports, as written in this module.
    reexports: BTreeMap<String, Vec<String>>,
}

/// One crate's modules (index 0 is the root) and the paths written in them.
struct ModuleTree {
    modules: Vec<Module>,
    references: Vec<Reference>,
}

impl ModuleTree {
    fn read(root: &Path) -> ModuleTree {
        let dir = root.parent().expect("a crate root in a directory").to_path_buf();
        let mut tree = ModuleTree { modules: Vec::new(), references: Vec::new() };
        tree.add_file(root.to_path_buf(), None, dir, "crate");
        tree
    }

    fn add_file(&mut self, file: PathBuf, parent: Option<usize>, children_dir: PathBuf, name: &str) -> usize {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|error| panic!("reading {}: {error}", file.display()));
        let tokens = TokenStream::from_str(&text).unwrap_or_else(|error| panic!("tokenizing {}: {error:?}", file.display()));
        let module = self.add_module(file, parent, children_dir, name);
        self.scan(module, tokens);
        module
    }

    fn add_module(&mut self, file: PathBuf, parent: Option<usize>, children_dir: PathBuf, name: &str) -> usize {
        let id = self.modules.len();
        self.modules.push(Module {
            file,
            parent,
            children_dir,
            children: BTreeMap::new(),
            reexports: BTreeMap::new(),
        });
        if let Some(parent) = parent {
            self.modules[parent].children.insert(name.to_owned(), id);
        }
        id
    }

    /// Collects `mod` declarations, `use` trees and paths at one level of
    /// `tokens`, and at every level inside its groups.
    fn scan(&mut self, module: usize, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut path_attribute: Option<String> = None;
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Punct(punct) if punct.as_char() == '#' => {
                    let inner = tokens.get(i + 1).is_some_and(|token| is_punct(token, '!'));
                    if let Some(TokenTree::Group(attribute)) = tokens.get(i + 1 + usize::from(inner))
                        && attribute.delimiter() == Delimiter::Bracket
                        && let Some(path) = path_attribute_value(attribute.stream())
                    {
                        path_attribute = Some(path);
                    }
                }
                TokenTree::Punct(punct) if punct.as_char() == ';' => path_attribute = None,
                TokenTree::Ident(ident) if ident == "mod" => {
                    if let Some(TokenTree::Ident(name)) = tokens.get(i + 1) {
                        let name = name.to_string();
                        match tokens.get(i + 2) {
                            Some(TokenTree::Group(body)) if body.delimiter() == Delimiter::Brace => {
                                let dir = self.modules[module].children_dir.join(&name);
                                let file = self.modules[module].file.clone();
                                let inline = self.add_module(file, Some(module), dir, &name);
                                self.scan(inline, body.stream());
                                i += 3;
                                continue;
                            }
                            Some(TokenTree::Punct(semi)) if semi.as_char() == ';' => {
                                self.add_child_file(module, &name, path_attribute.take());
                            }
                            _ => {}
                        }
                    }
                }
                TokenTree::Ident(ident) if ident == "use" => {
                    let end = tokens[i..].iter().position(|token| is_punct(token, ';')).map_or(tokens.len(), |at| i + at);
                    let reexport = i > 0 && is_reexport(&tokens[..i]);
                    for leaf in use_leaves(&tokens[i + 1..end]) {
                        match (reexport, leaf.binding) {
                            (true, Some(name)) => {
                                self.modules[module].reexports.insert(name, leaf.segments);
                            }
                            (true, None) => {}
                            (false, _) => self.references.push(Reference {
                                module,
                                text: leaf.segments.join("::"),
                                segments: leaf.segments,
                            }),
                        }
                    }
                    i = end;
                    continue;
                }
                TokenTree::Ident(ident) if starts_path(&tokens, i) => {
                    let mut segments = vec![ident.to_string()];
                    let mut next = i + 1;
                    while is_path_separator(&tokens, next) {
                        let Some(TokenTree::Ident(segment)) = tokens.get(next + 2) else { break };
                        segments.push(segment.to_string());
                        next += 3;
                    }
                    self.references.push(Reference { module, text: segments.join("::"), segments });
                    i = next;
                    continue;
                }
                TokenTree::Group(group) => self.scan(module, group.stream()),
                _ => {}
            }
            i += 1;
        }
    }

    fn add_child_file(&mut self, module: usize, name: &str, path_attribute: Option<String>) {
        let parent = &self.modules[module];
        let file = match path_attribute {
            Some(path) => parent.file.parent().expect("a file in a directory").join(path),
            None => {
                let flat = parent.children_dir.join(format!("{name}.rs"));
                let nested = parent.children_dir.join(name).join("mod.rs");
                if flat.is_file() { flat } else { nested }
            }
        };
        assert!(file.is_file(), "{}: `mod {name};` has no file at {}", parent.file.display(), file.display());
        let is_mod_rs = file.file_name().is_some_and(|file_name| file_name == "mod.rs");
        let children_dir = if is_mod_rs { file.parent().expect("a directory").to_path_buf() } else { file.with_extension("") };
        self.add_file(file, Some(module), children_dir, name);
    }

    /// (from file, to file, the path that names it), one per reference
    /// that resolves to a module of this crate in another file.
    fn edges(&self) -> Vec<(PathBuf, PathBuf, String)> {
        let mut edges = Vec::new();
        for reference in &self.references {
            let Some(target) = self.resolve(reference.module, &reference.segments, 0) else { continue };
            let (from, to) = (&self.modules[reference.module].file, &self.modules[target].file);
            if from != to {
                edges.push((from.clone(), to.clone(), reference.text.clone()));
            }
        }
        edges
    }

    /// The module `segments` (written in `module`) names or names an item
    /// of, following re-exports to where the item lives; `None` for paths
    /// outside this crate.
    fn resolve(&self, module: usize, segments: &[String], depth: usize) -> Option<usize> {
        // A re-export chain longer than this is a re-export of itself.
        if depth > 16 {
            return None;
        }
        let (first, rest) = segments.split_first()?;
        let mut current = match first.as_str() {
            "crate" => 0,
            "self" => module,
            "super" => self.modules[module].parent?,
            name => *self.modules[module].children.get(name)?,
        };
        let mut rest = rest;
        while let Some((segment, tail)) = rest.split_first() {
            let next = match segment.as_str() {
                "super" => self.modules[current].parent,
                "self" => Some(current),
                name => self.modules[current].children.get(name).copied(),
            };
            match next {
                Some(next) => current = next,
                None => break,
            }
            rest = tail;
        }
        match rest.first().and_then(|item| self.modules[current].reexports.get(item)) {
            Some(reexported) => self.resolve(current, reexported, depth + 1).or(Some(current)),
            None => Some(current),
        }
    }
}

/// The value of a `#[path = "..."]` attribute's bracket contents.
fn path_attribute_value(attribute: TokenStream) -> Option<String> {
    let tokens: Vec<TokenTree> = attribute.into_iter().collect();
    match tokens.as_slice() {
        [TokenTree::Ident(name), TokenTree::Punct(equals), TokenTree::Literal(value)]
            if name == "path" && equals.as_char() == '=' =>
        {
            Some(value.to_string().trim_matches('"').to_owned())
        }
        _ => None,
    }
}

/// Whether the `use` after `before` is public in some way (`pub`,
/// `pub(crate)`, `pub(super)`): a re-export.
fn is_reexport(before: &[TokenTree]) -> bool {
    match before {
        [.., TokenTree::Ident(visibility)] => visibility == "pub",
        [.., TokenTree::Ident(visibility), TokenTree::Group(scope)] => {
            visibility == "pub" && scope.delimiter() == Delimiter::Parenthesis
        }
        _ => false,
    }
}

fn is_punct(token: &TokenTree, char: char) -> bool {
    matches!(token, TokenTree::Punct(punct) if punct.as_char() == char)
}

/// `::` at `at`.
fn is_path_separator(tokens: &[TokenTree], at: usize) -> bool {
    matches!(
        (tokens.get(at), tokens.get(at + 1)),
        (Some(TokenTree::Punct(first)), Some(second))
            if first.as_char() == ':' && first.spacing() == Spacing::Joint && is_punct(second, ':')
    )
}

/// Whether the identifier at `at` begins a path (`a::`): not a later
/// segment of one, nor a field or method after `.`.
fn starts_path(tokens: &[TokenTree], at: usize) -> bool {
    let after_separator = at >= 2 && is_path_separator(tokens, at - 2);
    let after_dot = at >= 1 && is_punct(&tokens[at - 1], '.');
    is_path_separator(tokens, at + 1) && !after_separator && !after_dot
}

/// One name a `use` brings in: its full path, and the name it is bound to
/// (`None` for a glob).
struct UseLeaf {
    segments: Vec<String>,
    binding: Option<String>,
}

/// The leaves of a `use` tree (the tokens between `use` and `;`); paths
/// starting at `::` (an external crate) are left out.
fn use_leaves(tokens: &[TokenTree]) -> Vec<UseLeaf> {
    let mut leaves = Vec::new();
    if !is_path_separator(tokens, 0) {
        collect_use_leaves(tokens, &[], &mut leaves);
    }
    leaves
}

fn collect_use_leaves(tokens: &[TokenTree], prefix: &[String], leaves: &mut Vec<UseLeaf>) {
    let mut segments = prefix.to_vec();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Ident(ident) if ident == "as" => {
                if let Some(TokenTree::Ident(alias)) = tokens.get(i + 1) {
                    let binding = (alias != "_").then(|| alias.to_string());
                    leaves.push(UseLeaf { segments, binding });
                }
                return;
            }
            // `a::{self, b}`: `self` is `a` itself.
            TokenTree::Ident(ident) if ident == "self" && !prefix.is_empty() => {}
            TokenTree::Ident(ident) => segments.push(ident.to_string()),
            TokenTree::Punct(punct) if punct.as_char() == '*' => {
                leaves.push(UseLeaf { segments, binding: None });
                return;
            }
            TokenTree::Group(group) if group.delimiter() == Delimiter::Brace => {
                let inner: Vec<TokenTree> = group.stream().into_iter().collect();
                for branch in inner.split(|token| is_punct(token, ',')).filter(|branch| !branch.is_empty()) {
                    collect_use_leaves(branch, &segments, leaves);
                }
                return;
            }
            _ => {}
        }
        i += 1;
    }
    let binding = segments.last().cloned();
    leaves.push(UseLeaf { segments, binding });
}

#[cfg(test)]
#[path = "imports_tests.rs"]
mod tests;
