"""The shape of the code: the module import graph has no cycle, and data flows one way.

Every import counts, including those inside functions (a deferred import still binds the two
modules together), except those under ``if TYPE_CHECKING:``. Importing ``a.b.c`` also runs
``a/__init__.py`` and ``a/b/__init__.py``, so an import depends on the target's packages too,
except the importer's own packages (already being imported when it runs).

``python -m tests.test_architecture`` prints the graph between packages (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = ("engine", "storage", "app")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    out = {}
    for top in TOP:
        for path in (ROOT / top).rglob("*.py"):
            out[_module_name(path)] = path
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                for inner in ast.walk(sub):
                    if hasattr(inner, "lineno"):
                        lines.add(inner.lineno)
    return lines


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (directly, deferred, or as a package)."""
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_lines(tree)
        targets: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    targets.add(sub if sub in modules else node.module)
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for target in targets:
            parts = target.split(".")
            if parts[0] not in TOP:
                continue
            # The target and every package above it run on import.
            for i in range(1, len(parts) + 1):
                dep = ".".join(parts[:i])
                if dep in modules and dep != name and dep not in own:
                    graph[name].add(dep)
        graph.setdefault(name, set())
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between packages: ``engine.search.bridge`` counts as ``engine.search``."""

    def pkg(m: str) -> str:
        parts = m.split(".")
        return ".".join(parts[:2]) if parts[0] == "engine" else parts[0]

    out: dict[str, set[str]] = defaultdict(set)
    for m, deps in graph.items():
        for d in deps:
            if pkg(d) != pkg(m) and pkg(d) != "engine":
                out[pkg(m)].add(pkg(d))
        out.setdefault(pkg(m), set())
    return out


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 40  # the scan found the project
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# Data flows one way (STYLE: spec -> space -> trial -> model + trainer -> metrics -> storage
# -> app/export): a package may not import the packages listed against it. The search and
# export are siblings: both build on the trial (engine.trial) and the probe (engine.models).
_FRONT = {"engine.search", "engine.export", "engine.cli", "app"}
FORBIDDEN = {
    "engine.models": {"engine.data", "engine.train", "engine.memory", "engine.spec", "storage",
                      "engine.samplers"} | _FRONT,
    "engine.data": {"engine.models", "engine.train", "engine.memory", "engine.spec", "storage",
                    "engine.samplers"} | _FRONT,
    "engine.train": {"engine.memory", "engine.spec", "storage", "engine.samplers"} | _FRONT,
    "engine.memory": {"engine.spec", "storage", "engine.samplers"} | _FRONT,
    "engine.trial": {"engine.models", "engine.memory", "engine.spec", "storage",
                     "engine.samplers"} | _FRONT,
    "engine.protocol": {"engine.models", "engine.memory", "storage", "engine.samplers"} | _FRONT,
    "engine.space": {"engine.models", "engine.memory", "storage", "engine.samplers"} | _FRONT,
    "engine.samplers": _FRONT,
    "engine.search": {"engine.export", "engine.cli", "app"},
    "engine.export": {"engine.search", "engine.samplers", "engine.cli", "app"},
    "storage": {"engine.models", "engine.data", "engine.train", "engine.memory", "engine.spec",
                "engine.samplers", "engine.space", "engine.protocol", "engine.trial"} | _FRONT,
}


def test_packages_import_only_what_is_upstream_of_them():
    edges = package_edges(import_graph())
    broken = {pkg: sorted(edges.get(pkg, set()) & banned) for pkg, banned in FORBIDDEN.items()}
    assert not any(broken.values()), broken


def test_packages_form_no_cycle():
    # A cycle between packages (search -> export -> search) is as binding as one between
    # modules: neither package can be read, tested or moved without the other.
    edges = package_edges(import_graph())
    cycle = find_cycle(edges)
    assert cycle is None, "package cycle: " + " -> ".join(cycle)


def _third_party(path: Path) -> set[str]:
    """Top-level names of the non-project modules a file imports (deferred ones included)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_lines(tree)
    out = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out - set(TOP)


def _reachable(graph: dict[str, set[str]], roots: list[str]) -> set[str]:
    seen, todo = set(), list(roots)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    return seen


def test_storage_imports_neither_torch_nor_ray():
    graph, modules = import_graph(), _modules()
    reached = _reachable(graph, [m for m in modules if m.split(".")[0] == "storage"])
    heavy = {m: sorted(_third_party(modules[m]) & {"torch", "ray"}) for m in reached}
    assert not any(heavy.values()), {m: h for m, h in heavy.items() if h}


def test_the_apps_spec_check_needs_no_torch():
    # What the app's spec editor runs (app/specs.py -> engine.spec), in a fresh interpreter:
    # every start of the app would otherwise pay for importing torch.
    import subprocess

    code = ("import sys, app.specs, engine.spec\n"
            "s = engine.spec.load_spec('search_spaces/quickstart.yaml')\n"
            "engine.spec.spec_hash(s)\n"
            "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
    graph, modules = import_graph(), _modules()
    reached = _reachable(graph, ["app.specs", "engine.spec"])
    assert not any("torch" in _third_party(modules[m]) for m in reached), \
        sorted(m for m in reached if "torch" in _third_party(modules[m]))


MAX_LINES = 450


def test_no_module_is_too_long_to_hold_in_ones_head():
    long = {m: n for m, p in _modules().items()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by responsibility (over {MAX_LINES} lines): {long}"


def test_only_the_study_record_touches_optuna_user_attributes():
    # storage/record/ is the one read and write of what a study stores (STYLE 17).
    hits = []
    for top in (*TOP, "bench"):
        for path in (ROOT / top).rglob("*.py"):
            if path.relative_to(ROOT).as_posix().startswith("storage/record/"):
                continue
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if "user_attr" in line:
                    hits.append(f"{path.relative_to(ROOT)}:{i}")
    assert not hits, hits


def package_graph_text() -> str:
    """The graph between packages, one line each, as docs/ARCHITECTURE.md shows it."""
    return "\n".join(f"{p:<16} -> {', '.join(sorted(deps)) or '(nothing)'}"
                     for p, deps in sorted(package_edges(import_graph()).items())
                     if p != "engine")


def test_the_architecture_document_shows_the_real_graph():
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    assert package_graph_text() in doc, ("docs/ARCHITECTURE.md's import graph is stale; "
                                         "paste the output of python -m tests.test_architecture")


if __name__ == "__main__":
    g = import_graph()
    print(package_graph_text())
    print(f"\n{len(g)} modules, {sum(map(len, g.values()))} edges, cycle: {find_cycle(g)}",
          file=sys.stderr)
