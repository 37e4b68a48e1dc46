"""The import structure of lman_ms: no import cycle between files, and no import that runs up the layer order.

Every ``import`` and ``from ... import`` of every ``lman_ms/**/*.py`` counts, at module level or inside a function
(a deferred import is still a dependency), and so do the module names of a package's lazy ``_LAZY`` table.
"""
import ast
import os
from typing import Dict, List, Set

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lowest first. A module belongs to the longest prefix that names it; it may import its own layer and those below.
LAYERS = [
    ("config and leaf helpers", ["lman_ms.config", "lman_ms.utils"]),
    ("data and weight-name tables", ["lman_ms.data", "lman_ms.convert"]),
    ("models", ["lman_ms.models"]),
    ("loading: a path on disk -> a model", ["lman_ms.models.loader", "lman_ms.convert.clip_checkpoint"]),
    ("train, infer, eval", ["lman_ms.train", "lman_ms.infer", "lman_ms.eval"]),
    ("applications", ["lman_ms.demo", "lman_ms.ablation", "lman_ms.serve"]),
    ("public API facade", ["lman_ms"]),
]

# Known upward imports left in files owned elsewhere, (importer, imported): each entry names what fixes it.
ALLOWED_UPWARD = {
}


def _modules() -> Dict[str, str]:
    mods = {}
    for folder, _, files in os.walk(os.path.join(ROOT, "lman_ms")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                mod = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                mods[mod[:-len(".__init__")] if mod.endswith(".__init__") else mod] = path
    return mods


def _to_module(name: str, mods: Dict[str, str]) -> str:
    """The deepest lman_ms file that importing ``name`` executes last ('' for other libraries)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name


def _imports(mod: str, path: str, mods: Dict[str, str]) -> Set[str]:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    package = mod if path.endswith("__init__.py") else mod.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            # "from pkg import sub" imports the submodule file; "from mod import name" the module
            names += [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets):
            names += [v.value for v in getattr(node.value, "values", []) if isinstance(v, ast.Constant)]
    found = {_to_module(n, mods) for n in names if n.split(".")[0] == "lman_ms"}
    return found - {"", mod}


def import_graph() -> Dict[str, Set[str]]:
    mods = _modules()
    return {mod: _imports(mod, path, mods) for mod, path in sorted(mods.items())}


def layer_of(mod: str) -> int:
    best, level = "", None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            covers = mod == p if p == "lman_ms" else (mod == p or mod.startswith(p + "."))
            if covers and len(p) > len(best):
                best, level = p, i
    if level is None:
        raise AssertionError(f"{mod} is in no layer of tests/test_layering.py: add its package to LAYERS")
    return level


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_files():
    assert cycles(import_graph()) == []


def test_no_import_runs_up_the_layers():
    upward = sorted((a, b) for a, deps in import_graph().items() for b in deps if layer_of(b) > layer_of(a))
    described = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})" for a, b in upward
                 if (a, b) not in ALLOWED_UPWARD]
    assert described == []
    fixed = sorted(set(ALLOWED_UPWARD) - set(upward))
    assert fixed == [], f"fixed, remove from ALLOWED_UPWARD: {fixed}"


def test_utils_holds_leaf_helpers_only():
    graph = import_graph()
    outside = {m: sorted(d for d in deps if not d.startswith("lman_ms.utils"))
               for m, deps in graph.items() if m.startswith("lman_ms.utils")}
    assert {m: d for m, d in outside.items() if d} == {}


def test_the_checker_sees_deferred_relative_and_lazy_imports():
    """The parser on the shapes it must understand, checked on real files of the package."""
    graph = import_graph()
    assert "lman_ms.convert.clip" in graph["lman_ms.models.vision"]        # inside from_hf
    assert "lman_ms.models.adapter" in graph["lman_ms.models.lman"]         # from .adapter import ...
    assert "lman_ms.models.vision" in graph["lman_ms.models"]               # the lazy table
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
