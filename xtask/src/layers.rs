//! The layers of the hypervisor's bare-metal glue, `kernel/src/hv`: which folder may use which
//! (docs/design.md, "Layers of hv"), checked over the module paths its files name. A file's
//! edges are the modules it names through `crate::hv::`, `super::` or `self::` (a `use` group
//! counts each name in it; a file naming its own folder's `mod.rs` is no edge); `hv/mod.rs` uses
//! every folder. The check fails on an edge to a later
//! layer, on an import cycle between files, and on a folder missing from `LAYERS`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The folders of `hv`, lowest first: each may use only the ones before it (and itself); `hv`'s
/// own `mod.rs`, the boot flow and the core loops, uses them all.
pub const LAYERS: [&str; 6] = ["host", "passthrough", "irq", "vm", "virtio", "world"];

/// A module: its path below `hv` (`[]` is `hv` itself, `["host", "cpu"]` is `hv/host/cpu.rs`).
type Module = Vec<String>;

/// Every `.rs` file below `dir` as (module path, source).
fn read_modules(
    dir: &Path,
    prefix: &Module,
    out: &mut Vec<(Module, String)>,
) -> Result<(), String> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let mut module = prefix.clone();
        if path.is_dir() {
            module.push(name);
            read_modules(&path, &module, out)?;
        } else if let Some(stem) = name.strip_suffix(".rs") {
            if stem != "mod" {
                module.push(stem.to_string());
            }
            let src = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            out.push((module, src));
        }
    }
    Ok(())
}

fn ident_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len())
}

/// The module paths `src`, the file of `module`, names.
fn named_paths(module: &Module, src: &str) -> Vec<Module> {
    let code: String = src
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = ["crate::hv::", "super::", "self::"]
        .iter()
        .filter_map(|p| rest.find(p).map(|i| (i, *p)))
        .min()
    {
        let (i, head) = at;
        let before = rest[..i].chars().next_back();
        rest = &rest[i + head.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        // Where the path starts: `hv`, the file's own module, or its parent.
        let mut path: Module = match head {
            "crate::hv::" => Vec::new(),
            "self::" => module.clone(),
            _ => module[..module.len().saturating_sub(1)].to_vec(),
        };
        loop {
            if let Some(r) = rest.strip_prefix("super::") {
                path.pop();
                rest = r;
                continue;
            }
            let n = ident_len(rest);
            if n == 0 {
                break;
            }
            path.push(rest[..n].to_string());
            rest = &rest[n..];
            match rest.strip_prefix("::") {
                Some(r) if !r.starts_with('{') => rest = r,
                _ => break,
            }
        }
        if let Some(group) = rest.strip_prefix("::{").or_else(|| rest.strip_prefix('{')) {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let item = item.trim();
                let n = item
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(item.len());
                if n > 0 && item != "self" {
                    let mut p = path.clone();
                    p.extend(item[..n].split("::").map(String::from));
                    out.push(p);
                }
            }
        }
        out.push(path);
    }
    out
}

/// The import graph of the modules under `hv`: module -> the modules it uses.
pub fn graph(hv: &Path) -> Result<BTreeMap<Module, BTreeSet<Module>>, String> {
    let mut files = Vec::new();
    read_modules(hv, &Vec::new(), &mut files)?;
    let modules: BTreeSet<Module> = files.iter().map(|(m, _)| m.clone()).collect();
    // The longest module a path starts with (a path naming an item of `hv` itself is `hv`).
    let resolve = |path: &Module| -> Module {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| modules.contains(p))
            .unwrap_or_default()
    };
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, src) in &files {
        let to = edges.entry(module.clone()).or_default();
        for p in named_paths(module, src) {
            let target = resolve(&p);
            // A folder's `mod.rs` is its files' common part (`irq::ExitAction`); `hv` itself is not.
            let own_folder = !target.is_empty() && module.starts_with(&target);
            if &target != module && !own_folder {
                to.insert(target);
            }
        }
    }
    let top: BTreeSet<Module> = modules.iter().filter(|m| m.len() == 1).cloned().collect();
    edges.entry(Vec::new()).or_default().extend(top);
    Ok(edges)
}

/// What is wrong with `edges`: uses of a later layer, files outside `LAYERS`, and cycles.
pub fn problems(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<String> {
    let rank = |m: &Module| -> Option<usize> {
        match m.first() {
            None => Some(LAYERS.len()),
            Some(f) => LAYERS.iter().position(|l| l == f),
        }
    };
    let mut out = Vec::new();
    for (from, tos) in edges {
        let Some(rf) = rank(from) else {
            out.push(format!(
                "hv/{}: in no layer (add its folder to LAYERS)",
                from.join("/")
            ));
            continue;
        };
        for to in tos {
            if rank(to).is_none_or(|rt| rt > rf) {
                out.push(format!(
                    "hv/{} uses hv/{}: a later layer",
                    from.join("/"),
                    to.join("/")
                ));
            }
        }
    }
    for cycle in cycles(edges) {
        let names: Vec<String> = cycle
            .iter()
            .map(|m| format!("hv/{}", m.join("/")))
            .collect();
        out.push(format!("import cycle among: {}", names.join(", ")));
    }
    out
}

/// `cargo xtask layers` (and the end of `cargo xtask clippy`).
pub fn check(repo: &Path) -> crate::Result {
    crate::banner("layers: kernel/src/hv");
    let edges = graph(&repo.join("kernel/src/hv"))?;
    let found = problems(&edges);
    if found.is_empty() {
        println!(
            "xtask: layers: {} modules, no cycles; {}",
            edges.len(),
            LAYERS.join(" < ")
        );
        return Ok(());
    }
    crate::fail(found.join("\n"))
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, (usize, usize)>,
        stack: Vec<&'a Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let i = s.index.len();
        s.index.insert(v, (i, i));
        s.stack.push(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let low = match s.index.get(w) {
                None => {
                    visit(s, w);
                    s.index[w].1
                }
                Some(&(wi, _)) if s.stack.contains(&w) => wi,
                Some(_) => continue,
            };
            let e = s.index.get_mut(v).expect("visited");
            e.1 = e.1.min(low);
        }
        if s.index[v].0 == s.index[v].1 {
            let at = s.stack.iter().rposition(|m| *m == v).expect("on the stack");
            let comp: Vec<Module> = s.stack.drain(at..).cloned().collect();
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Module {
        s.split('/')
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect()
    }

    #[test]
    fn paths_named_by_use_lines_and_expressions() {
        let src = "use super::{a, b::C};\nuse crate::hv::host::timer;\n// super::ignored\nlet x = super::super::d::f();";
        let got = named_paths(&m("irq/avic"), src);
        assert!(got.contains(&m("irq/a")));
        assert!(got.contains(&m("irq/b/C")));
        assert!(got.contains(&m("host/timer")));
        assert!(got.contains(&m("d/f")));
        assert!(!got.iter().any(|p| p.contains(&"ignored".to_string())));
    }

    #[test]
    fn a_cycle_and_an_upward_use_are_found() {
        let mut edges = BTreeMap::new();
        edges.insert(m("host/a"), BTreeSet::from([m("host/b")]));
        edges.insert(m("host/b"), BTreeSet::from([m("host/a"), m("vm/c")]));
        edges.insert(m("vm/c"), BTreeSet::new());
        let p = problems(&edges);
        assert!(p.iter().any(|l| l.starts_with("import cycle")), "{p:?}");
        assert!(
            p.iter()
                .any(|l| l == "hv/host/b uses hv/vm/c: a later layer"),
            "{p:?}"
        );
    }

    /// The real tree: no cycles, every folder uses only earlier ones.
    #[test]
    fn hv_is_layered() {
        let hv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel/src/hv");
        let edges = graph(&hv).expect("read kernel/src/hv");
        assert!(edges.len() > 20, "too few modules found: {edges:?}");
        let p = problems(&edges);
        assert!(p.is_empty(), "{}", p.join("\n"));
    }
}
