"""The package's layering, read from its imports (an AST scan, nothing imported): each room
imports only rooms on lower floors, no import circles, and every import inside a function says
why it is there (``# lazy: ...`` for start-up time, ``# optional: ...`` for an extra)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "seqbench"

# From the top floor down; a room may import only rooms on floors below its own. The README's
# "Layout" section shows the same floors.
FLOORS: list[set[str]] = [
    {"__main__"},
    {"cli", "api"},
    {"services"},
    {"reporting"},
    {"tuning"},
    {"execution"},
    {"training", "tracking"},
    {"configure"},
    {"memprof"},
    {"storage"},
    {"config"},
    {"measure", "presets", "plugins"},
    {"data", "losses", "models"},
    {"space", "registry", "coerce", "names", "atomic", "devices", "colors", "events", "policies"},
    {"errors"},
]
FLOOR = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}
MAX_LINES = 420


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"), path


def room(module: str) -> str | None:
    """``seqbench.execution.grid`` -> ``execution``; the package's own ``__init__`` has no room."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return []


def seqbench_rooms(names: list[str]) -> set[str]:
    found = set()
    for name in names:
        target = room(name) if name.startswith("seqbench.") else None
        if target and ((PACKAGE / target).is_dir() or (PACKAGE / f"{target}.py").is_file()):
            found.add(target)
    return found


def test_every_room_has_a_floor() -> None:
    rooms = {room(module) for module, _ in modules()} - {None}
    assert rooms - set(FLOOR) == set(), "a new room: give it a floor in FLOORS (and in the README)"


def test_rooms_import_only_rooms_below() -> None:
    upward = []
    for module, path in modules():
        here = room(module)
        if here is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            for target in seqbench_rooms(imported(node)) - {here}:
                if FLOOR[target] <= FLOOR[here]:
                    upward.append(f"{module} (floor {FLOOR[here]}) imports {target} (floor {FLOOR[target]})")
    assert upward == []


def test_no_import_circle_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    names = {module for module, _ in modules()}
    for module, path in modules():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            wanted = imported(node)
            # ``from seqbench.reporting import stats`` imports the module ``stats``, not the package's face.
            submodules = [name for name in wanted[1:] if name in names]
            for name in submodules or wanted[:1]:
                while name and name not in names:
                    name = name.rpartition(".")[0]
                if name and name != module and name != "seqbench":
                    targets.add(name)
        graph[module] = targets
    state: dict[str, int] = {}
    circles: list[str] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                circles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_imports_inside_functions_say_why() -> None:
    untagged = []
    for module, path in modules():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        text = " ".join(lines[inner.lineno - 1 : inner.end_lineno])
                        if "# lazy:" not in text and "# optional:" not in text:
                            untagged.append(f"{path.relative_to(PACKAGE.parent)}:{inner.lineno}")
    assert untagged == [], "tag each with its reason (# lazy: torch, # optional: ray) or move it to the top"


def test_no_module_outgrows_one_story() -> None:
    long = [f"{path.relative_to(PACKAGE.parent)}: {n}" for _, path in modules() if (n := len(path.read_text().splitlines())) > MAX_LINES]
    assert long == []
