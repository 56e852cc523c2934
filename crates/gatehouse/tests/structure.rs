//! The shape of `crates/gatehouse/src`: its top-level modules import each other
//! without a cycle, so that each can be read (and replaced) knowing only the
//! ones below it. docs/design.md draws the layers this test keeps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module name -> the top-level modules its files name as `crate::x`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            // Every file below a module's folder, however deep, is that module's.
            let mut dirs = vec![path.clone()];
            while let Some(dir) = dirs.pop() {
                for f in std::fs::read_dir(&dir).unwrap() {
                    let f = f.unwrap().path();
                    if f.is_dir() {
                        dirs.push(f);
                    } else {
                        files.push((name.clone(), f));
                    }
                }
            }
        } else if path.extension().is_some_and(|e| e == "rs") && name != "main" {
            files.push((name, path));
        }
    }
    for (module, path) in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            // `crate::` preceded by an identifier character is part of a path
            // like `some_crate::`, not ours.
            if i > 0 && (text.as_bytes()[i - 1].is_ascii_alphanumeric() || text.as_bytes()[i - 1] == b'_') {
                continue;
            }
            let rest = &text[i + "crate::".len()..];
            let dep: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !dep.is_empty() && dep != module {
                deps.insert(dep);
            }
        }
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        at: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    walk(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn the_modules_of_the_binary_import_each_other_without_a_cycle() {
    let graph = imports();
    assert!(graph.len() > 10, "found only {graph:?}");
    let cycles: Vec<String> = graph.keys().filter_map(|m| cycle(&graph, m)).map(|c| c.join(" -> ")).collect();
    assert!(cycles.is_empty(), "import cycles among crates/gatehouse/src modules:\n{}", cycles.join("\n"));
}

#[test]
fn the_checker_finds_a_cycle_when_there_is_one() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    graph.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    graph.insert("d".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycle(&graph, "a").unwrap(), ["a", "b", "c", "a"]);
    assert!(cycle(&graph, "d").is_none());
}

/// The leaf modules reach nothing else in the crate: what a connection knows
/// about itself, the bodies' progress, and the pure header policy.
#[test]
fn leaves_stay_leaves() {
    let graph = imports();
    for leaf in ["conn", "request_body", "pages"] {
        let deps = &graph[leaf];
        let allowed: BTreeSet<String> = ["response_body"].iter().map(|s| s.to_string()).collect();
        let extra: Vec<_> = deps.difference(&allowed).collect();
        assert!(extra.is_empty() || leaf == "pages", "{leaf} imports {extra:?}");
    }
    assert!(graph["conn"].is_empty(), "conn imports {:?}", graph["conn"]);
    assert!(graph["request_body"].is_empty(), "request_body imports {:?}", graph["request_body"]);
}
