"""Fails when installing the plugin would change a package already installed (torch's own).

    python .ci/no_torch_changes.py REPORT.json [--ignore NAME ...]

REPORT.json is pip's installation report of a dry run, made in the environment to check and
read with that environment's Python (``pip install --dry-run --report REPORT.json '.[extra]'``).
Each package pip would install that is installed already, at any version, would be upgraded,
downgraded or reinstalled over the one there: that is a change, and the exit status is 1. The
rule stands because torch pins the CUDA libraries it was built with (CUPTI among them); a resolver
that upgrades one breaks torch or the tracer (docs/trace.md, 'Installing the tracer').
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    """Every distribution of this environment: canonical name -> version."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist.version)
    return found


def _release(version: str) -> tuple[int, ...] | None:
    """The leading numbers of a version (13.0.85 of 13.0.85.post1), None where it has none.
    Read here, without packaging: the environment checked may hold torch alone."""
    match = re.match(r"\d+(\.\d+)*", version)
    return tuple(int(n) for n in match.group(0).split(".")) if match else None


def _how(old: str, new: str) -> str:
    if old == new:
        return "reinstall"
    before, after = _release(old), _release(new)
    if before is None or after is None or before == after:
        return "replace"
    return "upgrade" if after > before else "downgrade"


def changes(
    report: Mapping[str, Any], have: Mapping[str, str], ignore: Iterable[str] = ()
) -> list[str]:
    """What the report would change of ``have``, one line each: 'name old -> new (how)'."""
    skip = {canonical(n) for n in ignore}
    said = []
    for entry in report.get("install", []):
        meta = entry["metadata"]
        name, new = canonical(meta["name"]), str(meta["version"])
        if name in skip or name not in have:
            continue
        old = have[name]
        said.append(f"{meta['name']} {old} -> {new} ({_how(old, new)})")
    return said


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="pip installation reports")
    parser.add_argument("--ignore", action="append", default=[], help="a package allowed to change")
    args = parser.parse_args(argv)
    have = installed()
    failed = False
    for path in args.reports:
        report = json.loads(path.read_text())
        said = changes(report, have, args.ignore)
        new = sum(canonical(e["metadata"]["name"]) not in have for e in report.get("install", []))
        if said:
            failed = True
            print(f"{path.name}: would change what is installed: " + "; ".join(said))
        else:
            print(f"{path.name}: nothing installed changes ({new} packages added)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
