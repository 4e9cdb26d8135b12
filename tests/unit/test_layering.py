"""The packages' dependencies point one way: app.py -> chat, auth, presence, web -> core, with no circles.

The imports are read with `ast` from the source, so the rule holds for every import,
including those inside functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FEATURES = ("chat", "auth", "presence", "web")
SERVER = ("core", *FEATURES)
# What each package may import from the others (its own modules always).
ALLOWED = {
    "core": set(),
    "auth": {"core"},
    "presence": {"core"},
    "chat": {"core"},
    "web": {"core"},
}
# The system clocks are read in core/clock.py only: everything else is handed a clock.
CLOCK_READS = {("time", "time"), ("time", "monotonic")}


def server_modules() -> dict[str, Path]:
    modules = {"app": ROOT / "app.py"}
    for package in SERVER:
        for path in sorted((ROOT / package).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


def imports_of(path: Path) -> set[str]:
    """Every module named by an import in the file (from-imports also as module.name)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    """module -> the server modules it imports."""
    modules = server_modules()
    return {name: {i for i in imports_of(path) if i in modules} for name, path in modules.items()}


def test_every_import_points_down() -> None:
    """core imports no feature; a feature imports only core and itself; nothing imports app."""
    wrong = []
    for module, targets in graph().items():
        package = module.split(".")[0]
        for target in targets:
            target_package = target.split(".")[0]
            if target_package == "app" or (
                package != "app"
                and target_package != package
                and target_package not in ALLOWED[package]
            ):
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_there_is_no_import_circle() -> None:
    edges = graph()
    # Submodule imports like `from chat import store` name the module chat.store.
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if nxt == node.split(".")[0] or node == nxt.split(".")[0]:
                continue  # a package and its own __init__
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_only_core_clock_reads_the_system_clocks() -> None:
    readers = []
    for name, path in server_modules().items():
        if name == "core.clock":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and (node.value.id, node.attr) in CLOCK_READS
            ):
                readers.append(f"{name}:{node.lineno} {node.value.id}.{node.attr}")
    assert readers == []


@pytest.mark.parametrize(
    ("source", "wrong"),
    [
        ("from chat.live import Live\n", "core.x imports chat.live"),
        ("import presence.tracker\n", "core.x imports presence.tracker"),
    ],
)
def test_the_check_catches_an_upward_import(
    source: str, wrong: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule is not vacuous: a core module importing a feature is reported."""
    fake = tmp_path / "x.py"
    fake.write_text(source)
    real = server_modules()
    monkeypatch.setattr(
        __import__(__name__, fromlist=["server_modules"]),
        "server_modules",
        lambda: {**real, "core.x": fake},
    )
    with pytest.raises(AssertionError, match=wrong.replace(".", r"\.")):
        test_every_import_points_down()
