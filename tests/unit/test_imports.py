"""Import hygiene import-linter cannot check: no import cycle anywhere in herd (function-local imports
included), and no module-global mutable state in herd.data (state is passed as arguments)."""

from __future__ import annotations

import ast
from pathlib import Path

import herd

ROOT = Path(herd.__file__).parent
# Methods that change a dict, list, set or deque in place.
MUTATORS = {
    "append", "extend", "insert", "remove", "pop", "popitem", "clear", "update", "setdefault", "add",
    "discard", "sort", "reverse", "appendleft", "extendleft", "difference_update", "intersection_update",
    "symmetric_difference_update", "__setitem__", "__delitem__",
}  # fmt: skip
MUTABLE_CALLS = {"dict", "list", "set", "bytearray", "defaultdict", "OrderedDict", "Counter", "deque"}


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the package `root`."""
    out = {}
    for f in sorted(root.rglob("*.py")):
        parts = [root.name, *f.relative_to(root).with_suffix("").parts]
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports_of(name: str, source: str, is_package: bool) -> list[str]:
    """Every dotted name `source` imports (anywhere in it: top level, functions, TYPE_CHECKING blocks)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                pkg = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            found += [f"{base}.{a.name}" for a in node.names]  # a submodule, or a name in `base`
    return found


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the modules of `files` it imports (a name imported from a module counts as the module)."""
    graph: dict[str, set[str]] = {}
    for name, f in files.items():
        targets = set()
        for imported in imports_of(name, f.read_text(encoding="utf-8"), f.name == "__init__.py"):
            while imported and imported not in files:  # `from pkg.mod import func` -> pkg.mod
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, iterative)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def _mutable(value: ast.expr | None) -> bool:
    if isinstance(value, ast.Dict | ast.List | ast.Set | ast.DictComp | ast.ListComp | ast.SetComp):
        return True
    if isinstance(value, ast.Call):
        f = value.func
        return (f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "") in MUTABLE_CALLS
    return False


def mutable_globals(tree: ast.Module) -> set[str]:
    """Module-level names bound to a mutable container."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and _mutable(node.value):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and _mutable(node.value) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def _denoted(expr: ast.expr, refs: dict, modules: dict) -> tuple[str, str] | None:
    """The (module, global) `expr` names: a local or imported name, or `module_alias.NAME`."""
    if isinstance(expr, ast.Name):
        return refs.get(expr.id)
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id in modules:
        return (modules[expr.value.id], expr.attr)
    return None


def global_state(sources: dict[str, str]) -> list[str]:
    """Each `global` statement and each mutation of a module-level container, as 'module: what'."""
    trees = {name: ast.parse(src) for name, src in sources.items()}
    owned = {(name, g) for name, tree in trees.items() for g in mutable_globals(tree)}
    problems = []
    for name, tree in trees.items():
        # local identifier -> (module, global) it denotes; `alias` -> module for `import x as alias`
        refs = {g: (name, g) for (m, g) in owned if m == name}
        modules = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in trees:
                refs |= {(a.asname or a.name): (node.module, a.name) for a in node.names}
            elif isinstance(node, ast.Import):
                modules |= {(a.asname or a.name): a.name for a in node.names if a.name in trees}

        for node in ast.walk(tree):
            if isinstance(node, ast.Global):
                problems.append(f"{name}: global {', '.join(node.names)}")
            hit = None
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del):
                hit = _denoted(node.value, refs, modules)
            elif isinstance(node, ast.AugAssign):
                hit = _denoted(node.target, refs, modules)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS:
                hit = _denoted(node.func.value, refs, modules)
            if hit in owned:
                problems.append(f"{name}: mutates {hit[0]}.{hit[1]} (line {node.lineno})")
    return problems


# ---------------------------------------------------------------- the checks work


def test_find_cycle_sees_function_local_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from .c import g\n")  # relative and function-local
    (pkg / "c.py").write_text("def g():\n    import pkg.a\n")
    (pkg / "d.py").write_text("from pkg import a\n")
    graph = import_graph(module_files(pkg))
    assert graph["pkg.d"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (pkg / "c.py").write_text("def g():\n    return 1\n")
    assert find_cycle(import_graph(module_files(pkg))) is None


def test_global_state_finds_a_judge_installed_at_module_level() -> None:
    sources = {
        "d.quality": "_JUDGES: dict = {}\nLABELS = (1, 2)\n"
        "def set_judge(j):\n    _JUDGES.clear()\n    _JUDGES.update(j)\n",
        "d.pipeline": "from d.quality import _JUDGES\nimport d.quality as q\n"
        "def run(j):\n    _JUDGES['x'] = j\n    q._JUDGES.pop('x')\n",
        "d.counter": "N = 0\ndef bump():\n    global N\n    N += 1\n",
        "d.clean": "TABLE = {'a': 1}\ndef read(k):\n    return dict(TABLE) | {k: 2}\n",
    }
    assert global_state(sources) == [
        "d.quality: mutates d.quality._JUDGES (line 4)",
        "d.quality: mutates d.quality._JUDGES (line 5)",
        "d.pipeline: mutates d.quality._JUDGES (line 4)",
        "d.pipeline: mutates d.quality._JUDGES (line 5)",
        "d.counter: global N",
    ]


# ---------------------------------------------------------------- herd itself


def test_no_import_cycle_anywhere_in_herd() -> None:
    graph = import_graph(module_files())
    assert len(graph) > 100 and "herd.data.pipeline" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_herd_data_has_no_module_global_mutable_state() -> None:
    files = {n: f for n, f in module_files().items() if n == "herd.data" or n.startswith("herd.data.")}
    assert "herd.data.quality" in files
    assert global_state({n: f.read_text(encoding="utf-8") for n, f in files.items()}) == []
