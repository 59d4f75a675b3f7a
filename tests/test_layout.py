"""The package's layout, read from the code's own imports with `ast`.

- No import cycle between stampede's modules: imports at module level and inside
  functions both count (a lazy import only hides a cycle); imports under
  `if TYPE_CHECKING:` do not, since they never run.
- The folders stand in the order lua -> state -> domain -> durable -> api -> runtime
  -> client (the Python client of the API, last: nothing in the service imports it):
  a folder imports only from itself, the folders before it and the shared
  top-level modules, which import only one another.
- tests/ and bench/ stay apart, and the wheel installs the `stampede` package only.
"""

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

from setuptools import find_namespace_packages

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "stampede"
ORDER = ("lua", "state", "domain", "durable", "api", "runtime", "client")
SHARED = frozenset({"settings", "errors", "outcomes", "logs", "periodic", "metrics"})
"""Top-level modules of stampede/ that every folder may import."""
FACADE_LAYER = "domain"
"""stampede/__init__.py re-exports the domain's Engine (and shared Outcome, Settings)."""

KNOWN_EDGES: frozenset[tuple[str, str]] = frozenset()
"""Import edges tolerated by the cycle check, each one to be removed."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(top: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / top).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that can run: module level, in functions, not under TYPE_CHECKING."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of `known` that module `name` imports, by their dotted names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import name` imports the module pkg.name if there is one.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a name in a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    known = _modules(PACKAGE)
    return {name: _imported(name, path, known) for name, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return FACADE_LAYER
    if len(parts) == 2 and parts[1] in SHARED:
        return "shared"
    if parts[1] in ORDER:
        return parts[1]
    raise AssertionError(f"{module} is in no folder of {ORDER} and not a shared module "
                         f"{sorted(SHARED)}: place it, or add it to this test")


def _may_import(importer: str, imported: str) -> bool:
    if imported == "shared":
        return True
    if importer == "shared":
        return False
    return ORDER.index(imported) <= ORDER.index(importer)


def test_the_reader_sees_lazy_imports_and_skips_type_checking(tmp_path: Path) -> None:
    """A guard against a reader that silently finds nothing."""
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\n"
                      "from p import a\n"
                      "import p.b.c\n"
                      "if TYPE_CHECKING:\n    from p import d\n"
                      "def f() -> None:\n    from .e import x\n")
    known = {name: source for name in ("p", "p.a", "p.b", "p.d", "p.e", "p.m")}
    assert _imported("p.m", source, known) == {"p.a", "p.b", "p.e"}
    assert "stampede.state.keys" in _graph()["stampede.domain.engine"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    graph = _graph()
    for importer, imported in KNOWN_EDGES:
        assert imported in graph[importer], f"allowance {importer} -> {imported} is stale"
        graph[importer].discard(imported)
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(
        " <-> ".join(c) + "\n    " + "\n    ".join(
            f"{a} -> {b}" for a in c for b in sorted(graph[a]) if b in c) for c in cycles)


def test_folders_import_only_downwards() -> None:
    wrong = [f"{a} ({_layer(a)}) -> {b} ({_layer(b)})"
             for a, targets in sorted(_graph().items()) for b in sorted(targets)
             if not _may_import(_layer(a), _layer(b))]
    assert not wrong, (f"allowed: {' -> '.join(ORDER)}, and every folder -> shared "
                       f"{sorted(SHARED)}; these go the wrong way:\n" + "\n".join(wrong))


def _top_imports(path: Path) -> set[str]:
    tops = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            tops |= {alias.name.split(".")[0] for alias in node.names}
        elif node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return tops


def test_tests_and_bench_stay_apart() -> None:
    for top, other in (("tests", "bench"), ("bench", "tests")):
        offenders = sorted(str(p.relative_to(ROOT)) for p in _modules(top).values()
                           if other in _top_imports(p))
        assert not offenders, f"{top}/ must not import {other}/: {offenders}"


def test_the_wheel_holds_only_the_stampede_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py-modules" not in config
    find = config["packages"]["find"]
    packages = find_namespace_packages(str(ROOT), include=find["include"],
                                       exclude=find.get("exclude", ()))
    assert PACKAGE in packages
    assert {p.split(".")[0] for p in packages} == {PACKAGE}
    assert set(packages) >= set(_modules(PACKAGE)) & {
        _module_name(p) for p in (ROOT / PACKAGE).rglob("__init__.py")}
