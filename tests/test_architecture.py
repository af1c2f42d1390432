"""The package's house rules, checked on its source: imports run one way (the plugin on top, pure
modules at the bottom, no circle, function-level imports included), folders import only folders
below them, nothing imports the plugin, the worker side stands alone, and no code outside
``scenarios/`` names a scenario (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_trtctx"
#: The worker imports nothing of the plugin's machinery: the scenarios, the device probe, the
#: settings, how it finds its tests again (proxy) and what those stand on.
WORKER_MAY_IMPORT_FOLDERS = {"scenarios", "cuda", "settings", "checks", "engines", "trace"}
WORKER_MAY_IMPORT = {
    "isolation",
    "isolation.channel",
    "isolation.proctree",
    "isolation.proxy",
    "isolation.warning_wire",
    "isolation.reruns",
    "isolation.prebuild",
    "errors",
    "messages",
    "storage",
    "wait_status",
}

#: The stages as folders, lowest first: a module imports only from its own folder and the folders
#: before it (docs/architecture.md draws this). Top-level modules are named alone.
FOLDER_ORDER: tuple[set[str], ...] = (
    {"errors", "messages", "storage", "wait_status"},
    {"cuda", "checks", "engines"},
    {"trace", "backends"},
    {"scenarios"},
    {"settings"},
    {"isolation"},
    {"records"},
    {"around_test", "hookspecs"},
    {"suite"},
    {"plugin", "(package)"},
)


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


def folder(module: str) -> str:
    """A module's stage: its top folder (or itself, at the top level). The package's own
    ``__init__`` is its public face, with the plugin on top."""
    return module.split(".")[0] or "(package)"


def rank(module: str) -> int:
    name = folder(module)
    found = [n for n, names in enumerate(FOLDER_ORDER) if name in names]
    assert found, f"{module}: its folder {name!r} is in no stage of FOLDER_ORDER"
    return found[0]


def test_folders_import_only_folders_below_them() -> None:
    upward = sorted(
        f"{name} -> {dep}"
        for name, deps in graph().items()
        for dep in deps
        if rank(dep) > rank(name) or (rank(dep) == rank(name) and folder(dep) != folder(name))
    )
    assert upward == []


def test_the_worker_side_needs_nothing_above_it() -> None:
    edges = graph()
    worker = edges["isolation.worker"]
    allowed = {d for d in worker if folder(d) in WORKER_MAY_IMPORT_FOLDERS} | WORKER_MAY_IMPORT
    assert worker <= allowed, worker - allowed
    scheduler = edges["isolation.scheduler"]
    assert "plugin" not in scheduler and "isolation.forking" not in scheduler


def test_no_code_outside_scenarios_names_a_scenario() -> None:
    """Adding a scenario is one module under scenarios/: no other module of the package spells a
    scenario's name (a branch on it, a table of it) outside that folder."""
    from pytest_trtctx.scenarios import SCENARIOS

    found = []
    for name, path in modules().items():
        if folder(name) == "scenarios":
            continue
        text = path.read_text()
        found += [f"{name}: {s!r}" for s in SCENARIOS if f'"{s}"' in text or f"'{s}'" in text]
    assert found == []


def test_the_pure_modules_are_at_the_bottom() -> None:
    level = levels(graph())
    for name in ("errors", "messages", "cuda.probe", "storage", "engines.spec"):
        assert level[name] <= 1, (name, level[name])
    assert level["plugin"] == max(level.values())


if __name__ == "__main__":  # print the stages, for docs/architecture.md
    mods = modules()
    for n, names in enumerate(FOLDER_ORDER):
        inside = sorted(m or "(package)" for m in mods if folder(m) in names)
        print(n, ", ".join(sorted(names)), ":", ", ".join(inside))
