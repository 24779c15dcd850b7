"""The shape of the ``avengers`` package, checked from its source (nothing is imported).

Every ``.py`` file under ``shared/avengers`` is a module, named as Python names it
(``avengers/server/app.py`` is ``avengers.server.app``; a package's ``__init__.py`` is the
package itself). The files are found afresh on each run, so the checks follow the layout.

The import graph has an edge from module A to module B for every ``import`` or ``from ...
import`` statement in A that names B, wherever it stands: at the top, inside a function, or under
``if TYPE_CHECKING:``. Relative imports are resolved against A's package. ``from P import n``
points at the module ``P.n`` when there is one and at ``P`` (its ``__init__``) otherwise, so
``from . import scoring`` is an edge to ``avengers.routing.scoring`` while ``from . import __version__``
is an edge to the package ``avengers`` itself.

The one rule that keeps re-exports from counting as circles: importing ``avengers.x`` runs the
package ``__init__`` first, and that implicit step is *not* an edge (Python always finishes
initialising a package before it hands out its submodules, and the ``__init__`` only re-exports
them). Only explicit imports are edges, so a submodule that names the package itself (``from .
import name`` for a name the ``__init__`` defines, or ``from avengers import Router``) does close
a circle through the ``__init__``'s re-exports, and is reported.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PACKAGE = "avengers"
ROOT = Path(__file__).resolve().parents[1] / "shared" / PACKAGE


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


@cache
def modules() -> dict[str, Module]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        found[name] = Module(name, path, is_package)
    return found


@cache
def tree(name: str) -> ast.Module:
    module = modules()[name]
    return ast.parse(module.path.read_text(), filename=str(module.path))


def _base(module: Module, node: ast.ImportFrom) -> str | None:
    """The absolute module a ``from ... import`` statement imports from (None: not ours)."""
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.package.split(".")
        if node.level > 1:
            parts = parts[: -(node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    return base if base == PACKAGE or base.startswith(PACKAGE + ".") else None


def _owner(dotted: str) -> str | None:
    """The longest prefix of ``dotted`` that is one of our modules."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules():
            return candidate
    return None


def imported_modules(name: str) -> set[str]:
    """Every module of ours that ``name`` imports explicitly (see the module docstring)."""
    module = modules()[name]
    out: set[str] = set()
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _owner(alias.name)
                if target is not None:
                    out.add(target)
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, node)
            if base is None:
                continue
            for alias in node.names:
                target = _owner(f"{base}.{alias.name}") or _owner(base)
                if target is not None:
                    out.add(target)
    out.discard(name)
    return out


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each strongly connected group of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm; the graph is small enough to recurse
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_shortest_cycle(graph, group) for group in groups]


def _shortest_cycle(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth-first search back to ``start`` inside the group
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError("a strongly connected group always has a cycle")


def test_the_module_walk_sees_the_package() -> None:
    found = modules()
    assert PACKAGE in found and f"{PACKAGE}.router" in found
    assert f"{PACKAGE}.artifact" in imported_modules(f"{PACKAGE}.router")


def test_cycle_finder_reports_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    graph = {name: imported_modules(name) for name in modules()}
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


# ---------------------------------------------------------------------- private names


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _module_bindings(name: str, parsed: ast.Module) -> dict[str, str]:
    """Names in module ``name`` bound to one of our modules by an import, with that module."""
    module = modules()[name]
    bound: dict[str, str] = {}
    for node in ast.walk(parsed):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _owner(alias.name) is None:
                    continue
                if alias.asname:  # import avengers.x as y: y is avengers.x
                    bound[alias.asname] = alias.name
                else:  # import avengers.x: the name bound is avengers, the package
                    bound[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, node)
            if base is None:
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in modules():
                    bound[alias.asname or alias.name] = full
    return bound


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attribute accesses on a plain name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def private_uses(name: str, parsed: ast.Module | None = None) -> list[str]:
    """Places where module ``name`` uses another module's private name: ``from .x import _y``,
    or ``x._y`` / ``avengers.x._y`` where ``x`` is bound to one of our modules by an import.
    (Importing a private *module*, ``from . import _sync``, is fine: it is package-internal.)"""
    module = modules()[name]
    parsed = tree(name) if parsed is None else parsed
    bindings = _module_bindings(name, parsed)
    found = []
    for node in ast.walk(parsed):
        where = f"{module.path.relative_to(ROOT.parent)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom):
            base = _base(module, node)
            if base is None:
                continue
            for alias in node.names:
                if not _is_private(alias.name) or f"{base}.{alias.name}" in modules():
                    continue
                if _owner(base) != name:
                    found.append(f"{where}: from {base} import {alias.name}")
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            dotted = _dotted(node.value)
            if dotted is None:
                continue
            head, _, rest = dotted.partition(".")
            if head not in bindings:
                continue
            target = ".".join(filter(None, [bindings[head], rest]))
            if target in modules() and target != name:
                found.append(f"{where}: {dotted}.{node.attr}")
    return found


def test_private_use_finder() -> None:
    src = "from .. import router, _sync\nfrom ..router import _x\nrouter._y()\nself._z = 1\n"
    uses = private_uses(f"{PACKAGE}.training.evaluation", ast.parse(src))
    assert [u.split(": ", 1)[1] for u in uses] == [
        f"from {PACKAGE}.router import _x",
        "router._y",
    ]


def test_no_module_uses_another_modules_private_names() -> None:
    uses = [use for name in sorted(modules()) for use in private_uses(name)]
    assert not uses, "private names used across modules:\n" + "\n".join(uses)


def class_privates(parsed: ast.Module) -> set[str]:
    """Private attribute and method names the classes of a module define: ``def _x``,
    ``_x = ...`` in a class body and ``self._x = ...`` in its methods."""
    names: set[str] = set()
    for cls in (n for n in ast.walk(parsed) if isinstance(n, ast.ClassDef)):
        for stmt in cls.body:  # class attributes
            targets = stmt.targets if isinstance(stmt, ast.Assign) else []
            if isinstance(stmt, ast.AnnAssign):
                targets = [stmt.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        for node in ast.walk(cls):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(node.name)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                names.add(node.attr)
    return {n for n in names if _is_private(n)}


def foreign_attribute_uses(
    name: str, parsed: ast.Module, own: set[str], foreign: dict[str, str]
) -> list[str]:
    """``obj._x`` in module ``name`` where ``_x`` is private to a class of another module
    (``foreign`` maps such names to that module) and no class of this module defines it
    (``own``). ``self._x`` and ``cls._x`` are a class's own business and never count."""
    module = modules()[name]
    found = []
    for node in ast.walk(parsed):
        if not isinstance(node, ast.Attribute) or node.attr in own or node.attr not in foreign:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        receiver = ast.unparse(node.value)
        where = f"{module.path.relative_to(ROOT.parent)}:{node.lineno}"
        found.append(f"{where}: {receiver}.{node.attr} (private to {foreign[node.attr]})")
    return found


def test_foreign_attribute_finder() -> None:
    parsed = ast.parse("r = Router()\nr._embedder = e\nself._embedder = e\n")
    uses = foreign_attribute_uses(
        f"{PACKAGE}.training.evaluation", parsed, set(), {"_embedder": f"{PACKAGE}.router"}
    )
    assert [u.split(": ", 1)[1] for u in uses] == [f"r._embedder (private to {PACKAGE}.router)"]


def test_no_module_reaches_into_another_modules_objects() -> None:
    privates = {name: class_privates(tree(name)) for name in modules()}
    uses = []
    for name in sorted(modules()):
        foreign = {
            attr: other
            for other, attrs in sorted(privates.items(), reverse=True)
            if other != name
            for attr in attrs
        }
        uses += foreign_attribute_uses(name, tree(name), privates[name], foreign)
    assert not uses, "private attributes of other modules' objects used:\n" + "\n".join(uses)


def test_artifact_and_card_know_nothing_of_the_router() -> None:
    # the router calls them with plain config, arrays and summaries, never the other way round
    for name in ("artifact", "card"):
        assert f"{PACKAGE}.router" not in imported_modules(f"{PACKAGE}.{name}")


ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def layers() -> dict[str, int]:
    """The layer of every module pattern in docs/architecture.md's table (``| 3 | `router`, ...``);
    ``cli.*`` covers the package ``avengers.cli`` and everything under it."""
    found: dict[str, int] = {}
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].isdigit():
            for name in re.findall(r"`([\w.*]+)`", cells[1]):
                found[name] = int(cells[0])
    return found


def layer_of(module: str, table: dict[str, int]) -> int | None:
    short = module.removeprefix(PACKAGE + ".")
    if short in table:
        return table[short]
    for pattern, layer in table.items():
        if pattern.endswith(".*") and (short == pattern[:-2] or short.startswith(pattern[:-1])):
            return layer
    return None


def test_every_module_has_a_documented_layer() -> None:
    table = layers()
    assert table, f"no layer table found in {ARCHITECTURE}"
    missing = [m for m in modules() if m != PACKAGE and layer_of(m, table) is None]
    assert not missing, f"modules missing from the layer table in {ARCHITECTURE.name}: {missing}"


def upward_imports(graph: dict[str, set[str]], table: dict[str, int]) -> list[str]:
    """Edges of ``graph`` that go from a module to one in a higher layer."""
    found = []
    for name in sorted(graph):
        if name == PACKAGE:
            continue  # the package __init__ re-exports from every layer
        own = layer_of(name, table)
        for dep in sorted(graph[name]):
            theirs = 99 if dep == PACKAGE else layer_of(dep, table)
            if own is not None and theirs is not None and theirs > own:
                found.append(f"{name} (layer {own}) imports {dep} (layer {theirs})")
    return found


def test_imports_point_down_the_layers() -> None:
    graph = {name: imported_modules(name) for name in modules()}
    upward = upward_imports(graph, layers())
    assert not upward, "imports against the documented layers:\n" + "\n".join(upward)


def test_layer_check_catches_an_upward_import() -> None:
    table = {"router": 3, "routing.scoring": 0, "server.*": 5}
    assert layer_of("avengers.server.app", table) == 5
    assert layer_of("avengers.serverless", table) is None
    graph = {
        "avengers.router": {"avengers.routing.scoring"},
        "avengers.routing.scoring": {"avengers.router"},
    }
    assert upward_imports(graph, table) == [
        "avengers.routing.scoring (layer 0) imports avengers.router (layer 3)"
    ]


def where_things_are() -> dict[str, list[str]]:
    """The "Where things are" map of docs/architecture.md: per row, the files and folders it
    points to (``routing/estimate.py``, ``server/``)."""
    text = ARCHITECTURE.read_text()
    section = text.split("## Where things are", 1)[1].split("\n## ", 1)[0]
    rows = {}
    lines = [line for line in section.splitlines() if line.startswith("|")]
    for line in lines[2:]:  # after the header and its rule
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = re.findall(r"`([\w/]+(?:\.py|/))`", cells[1])
    return rows


def test_the_where_things_are_map_points_at_real_files() -> None:
    rows = where_things_are()
    assert rows, f"no 'Where things are' map in {ARCHITECTURE}"
    missing = [p for paths in rows.values() for p in paths if not (ROOT / p).exists()]
    assert not missing, f"the map in {ARCHITECTURE.name} names files that do not exist: {missing}"
    # a newcomer finds the estimate in one step: the first row names one file, which defines it
    first, paths = next(iter(rows.items()))
    assert "estimate" in first and len(paths) == 1
    names = {n.name for n in ast.parse((ROOT / paths[0]).read_text()).body if hasattr(n, "name")}
    assert "estimate" in names
