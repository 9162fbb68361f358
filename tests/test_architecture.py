"""The house's floors (ARCHITECTURE.md), checked on the source: every ``deepgeo_runner`` import,
those inside functions and under ``TYPE_CHECKING`` included, runs down a floor or within one,
and no set of modules imports itself round in a circle."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.helpers import REPO

PACKAGE = "deepgeo_runner"

# (module or package, floor): a module's floor is that of its longest listed prefix. Lower floors
# never import higher ones. A module that matches no row fails the test: give it a floor here.
FLOORS: list[tuple[str, int]] = [
    ("deepgeo_runner.core", 0),  # base: files, cache, console, errors, signals, class tables, ranks
    ("deepgeo_runner.geo", 1),  # rasters and vectors (numpy, rasterio, geopandas)
    ("deepgeo_runner.ml", 2), ("deepgeo_runner.assess", 2), ("deepgeo_runner.report", 2),  # torch code, scores, plots
    ("deepgeo_runner.lit", 3),  # Lightning
    ("deepgeo_runner.stages", 4),  # config-free stage functions
    ("deepgeo_runner.export", 4),  # exported models (ONNX, torch.export, STAC MLM): read checkpoints, run models
    ("deepgeo_runner.config", 5),  # the run's schema, its checks, the typed options, the stage table
    ("deepgeo_runner.compare", 6),  # reading finished runs
    ("deepgeo_runner.pipeline", 7),  # task layer: reads the run's options, chains the stages, records the run
    ("deepgeo_runner.cli", 8), ("deepgeo_runner.repeat", 8), ("deepgeo_runner.launch", 8),  # entry points
    ("deepgeo_runner.sweeper", 8), ("deepgeo_runner.__main__", 8), ("deepgeo_runner", 8),
    ("deepgeo_runner.export.cli", 8),  # deepgeo-export
]


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((REPO / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module → the package's modules it imports anywhere in its source (the nearest existing module
    of a dotted name: ``from deepgeo_runner.geo import chips`` is ``deepgeo_runner.geo.chips``)."""

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for name in names:
                target = known(name) if name.split(".")[0] == PACKAGE else None
                if target is not None and target != module:
                    graph[module].add(target)
    return graph


def floor_of(module: str) -> int | None:
    """The floor of ``module``'s longest listed prefix (the package's own ``__init__`` only by its name)."""
    matches = [(len(prefix), floor) for prefix, floor in FLOORS
               if module == prefix or (prefix != PACKAGE and module.startswith(prefix + "."))]
    return max(matches)[1] if matches else None


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
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


def test_every_module_has_a_floor():
    assert [m for m in _modules() if floor_of(m) is None] == []
    assert floor_of("deepgeo_runner.newfolder.module") is None  # a new folder is placed on purpose


def test_no_import_runs_up_a_floor():
    graph = _imports(_modules())
    upward = [f"{a} ({floor_of(a)}) -> {b} ({floor_of(b)})" for a in sorted(graph) for b in sorted(graph[a])
              if floor_of(a) is not None and floor_of(b) is not None and floor_of(b) > floor_of(a)]
    assert upward == []


def test_no_import_circle_even_inside_functions():
    assert _circles(_imports(_modules())) == []


def test_the_walk_sees_imports_inside_functions(tmp_path):
    """The checks above are only as good as the walk: a circle closed inside a function is found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]
    assert "deepgeo_runner.pipeline.runner" in _imports(_modules())["deepgeo_runner.cli"]  # inside main()


MAX_FUNCTION_LINES = 60  # from ``def`` to the last line, docstring included (STYLE.md: value objects past it)
LONG_FUNCTIONS_ALLOWED: set[str] = set()  # "module:function" that truly cannot be split: none today


def _long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Every function and method of the package longer than ``limit`` lines, as ``module:name (lines)``."""
    found = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit and f"{module}:{node.name}" not in LONG_FUNCTIONS_ALLOWED:
                    found.append(f"{module}:{node.name} ({lines} lines)")
    return found


def test_no_function_is_longer_than_sixty_lines():
    """Past 60 lines a function carries too much: split it, and pass a value object rather than a dozen
    parameters (``PrepareOptions``, ``WindowSettings``, ``Nodata``)."""
    assert _long_functions() == []


def test_the_length_check_sees_long_functions():
    assert any("stages.prepare:prepare_scene" in f for f in _long_functions(limit=20))
