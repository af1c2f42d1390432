"""The package's house rules, checked on its source: imports run one way (the plugin on top, pure
modules at the bottom, no circle, function-level imports included), nothing imports the plugin,
the worker side stands alone, and no module outgrows one role (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_trtctx"
#: The worker imports nothing of the plugin's machinery: the order recipes, the device probe, the
#: settings, how it finds its tests again (proxy) and what those stand on.
WORKER_MAY_IMPORT = {
    "channel",
    "proctree",
    "orders",
    "probe",
    "contexts",
    "config",
    "outcomes",
    "checks",
    "errors",
    "names",
    "matrix",
    "spec",
    "storage",
    "tracer",
    "warning_wire",
    "reruns",
    "trace",
    "proxy",
}
MAX_LINES = 450
PLUGIN_MAX_LINES = 300


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__")
        found[name] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Package modules that ``name`` imports anywhere in its source (not the package root)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                base_parts = base_parts[: len(base_parts) - node.level + 1]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = (node.module or "").removeprefix("pytest_trtctx").lstrip(".")
                if not (node.module or "").startswith("pytest_trtctx"):
                    continue
            targets = [base, *(f"{base}.{a.name}" if base else a.name for a in node.names)]
        elif isinstance(node, ast.Import):
            targets = [
                a.name.removeprefix("pytest_trtctx.")
                for a in node.names
                if a.name.startswith("pytest_trtctx.")
            ]
        else:
            continue
        out |= {t for t in targets if t in known and t and t != name}
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def levels(edges: dict[str, set[str]]) -> dict[str, int]:
    """A module's level: 0 when it imports no package module, else one above its highest import.
    Raises on a circle (no level exists)."""
    level: dict[str, int] = {}
    visiting: set[str] = set()

    def of(name: str) -> int:
        if name in level:
            return level[name]
        assert name not in visiting, f"import circle through {name}"
        visiting.add(name)
        level[name] = 1 + max((of(dep) for dep in edges[name]), default=-1)
        visiting.discard(name)
        return level[name]

    for name in edges:
        of(name)
    return level


def test_imports_run_one_way() -> None:
    edges = graph()
    levels(edges)  # raises on a circle


def test_nothing_imports_the_plugin() -> None:
    importers = sorted(name for name, deps in graph().items() if "plugin" in deps)
    assert importers == []


def test_the_worker_side_needs_nothing_above_it() -> None:
    edges = graph()
    assert edges["worker"] <= WORKER_MAY_IMPORT, edges["worker"] - WORKER_MAY_IMPORT
    assert "plugin" not in edges["isolation"] and "forking" not in edges["isolation"]


def test_modules_hold_one_role() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert sizes["plugin"] < PLUGIN_MAX_LINES
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_pure_modules_are_at_the_bottom() -> None:
    level = levels(graph())
    for name in ("errors", "names", "probe", "storage", "spec"):
        assert level[name] <= 1, (name, level[name])
    assert level["plugin"] == max(level.values())


if __name__ == "__main__":  # print the layers, for docs/architecture.md
    by_level: dict[int, list[str]] = {}
    for module, n in levels(graph()).items():
        by_level.setdefault(n, []).append(module or "(package)")
    for n in sorted(by_level, reverse=True):
        print(n, ", ".join(sorted(by_level[n])))
