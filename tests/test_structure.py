"""The code base's shape: every import runs down the layers below, and no import circle
exists anywhere, between modules or between packages. Every import counts: those inside
functions (made lazily, to keep torch out of light commands) and those for type checking
only, since a circle hidden in either is still a circle a reader has to untangle."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: codealign's packages and top-level modules, bottom up: a layer imports only from the
#: layers below it (and within itself, without circles).
LAYERS: list[set[str]] = [
    {"errors"},
    {"settings", "jsonl", "web_guard"},  # the floor: settings import nothing above
    {"tasks", "cache", "memory", "batching"},
    {"samples", "answers"},
    {"prompting", "sandbox"},  # sandbox: standard library only, bundled into workers
    {"execution"},
    {"evaluation", "models"},
    {"tracking"},
    {"training"},
    {"readability"},  # the reward model and its degradations
    {"scoring"},  # owns every signal, readability's included
    {"rewards", "loop"},
    {"annotate"},
    {"cli"},
    {"__main__"},
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / "codealign").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports() -> dict[str, dict[str, int]]:
    """module -> {imported codealign module: line}, every import statement included."""
    modules = _modules()
    graph: dict[str, dict[str, int]] = defaultdict(dict)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                submodules = [
                    f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules
                ]
                targets = submodules or [base]
            else:
                continue
            for target in targets:
                if target in modules and target != name and target != "codealign":
                    graph[name].setdefault(target, node.lineno)
    return graph


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_in_a_circle() -> None:
    graph = {m: set(targets) for m, targets in imports().items()}
    assert _cycles(graph) == []


def test_no_package_imports_in_a_circle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in imports().items():
        for target in targets:
            if _top(module) != _top(target):
                graph[_top(module)].add(_top(target))
    assert _cycles(graph) == []


def test_imports_run_down_the_layers() -> None:
    layer = {name: k for k, names in enumerate(LAYERS) for name in names}
    tops = {_top(m) for m in _modules()} - {"codealign"}
    assert tops == set(layer), f"place these in LAYERS: {sorted(tops ^ set(layer))}"
    upward = [
        f"{_modules()[module].relative_to(ROOT)}:{line}: {module} imports {target}"
        for module, targets in imports().items()
        for target, line in targets.items()
        if layer[_top(target)] > layer[_top(module)]
    ]
    assert upward == []


def test_the_checks_see_lazy_and_type_only_imports() -> None:
    # The circle the loop had: a type-only import of the module that imports you.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert "codealign.execution.backends.choice" in imports()["codealign.execution.executor"]
    # ``from codealign.loop.state import RunState`` under TYPE_CHECKING is an edge too.
    assert "codealign.loop.state" in imports()["codealign.loop.stages"]
