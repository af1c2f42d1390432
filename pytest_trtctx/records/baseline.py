"""Baselines: output hashes (and, if asked, the outputs) kept per environment fingerprint.

``--trtctx-baseline=DIR`` compares every output a test hands to the plugin with the one recorded
for the same test in an earlier run:

* same environment fingerprint (GPU, driver, torch, TensorRT, cuda-python, Python): any bitwise
  difference fails the test — outputs must not drift across runs or rebuilds;
* another fingerprint (an upgrade): the difference is reported, not failed, in the terminal
  summary and the report, so an upgrade's effect on outputs is seen.

With ``--trtctx-baseline-keep`` the outputs themselves are kept too, so a difference comes with
the largest absolute difference and where it is. Layout: ``DIR/<fingerprint>/baseline.json``
(``{"environment": ..., "tests": {nodeid: {output: sha256}}}``) and ``DIR/<fingerprint>/outputs/``.
The pytest process writes ``baseline.json`` at the end of the session (new entries only: an
existing entry is never overwritten by a run that drifted); workers only read it.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..checks.outcomes import (
    DRIFT_PROPERTY,
    OUTPUTS,
    OUTPUTS_PROPERTY,
    SIGNATURE_PROPERTY,
    properties,
    unsaved,
)
from ..cuda.probe import environment
from ..errors import TrtctxError
from ..storage import UnusableInput, json_problem, locked, read_regular, save_json


class BaselineError(TrtctxError):
    """A baseline file cannot be used: the message names it and what is wrong."""


#: The largest baseline file read: a baseline of 100 000 tests is far smaller; a device or a
#: runaway file is refused instead of read into memory.
MAX_BASELINE_BYTES = 256 << 20
#: The lock beside each ``baseline.json`` that serialises the runs recording into it.
LOCK_NAME = "baseline.json.lock"

FINGERPRINT_KEYS = ("gpus", "driver", "cuda_driver_api", "versions", "python")


def fingerprint(env: dict[str, Any]) -> str:
    """A short stable name for what outputs depend on (not the OS string or the date)."""
    picked = {k: env.get(k) for k in FINGERPRINT_KEYS}
    picked["versions"] = {
        k: v for k, v in (env.get("versions") or {}).items() if k not in ("numpy",)
    }
    blob = json.dumps(picked, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _safe(nodeid: str, name: str) -> str:
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{nodeid}__{name}")
    digest = hashlib.sha256(f"{nodeid}\0{name}".encode()).hexdigest()[:10]
    return f"{text[-120:]}-{digest}.pt"


@dataclass(frozen=True)
class Drift:
    nodeid: str
    output: str
    old: str
    new: str
    same_environment: bool
    detail: str  # largest absolute difference, where outputs were kept

    def describe(self) -> str:
        where = "this environment" if self.same_environment else "another environment"
        return (
            f"{self.output}: differs from the baseline recorded in {where}: sha256 "
            f"{self.old[:16]} -> {self.new[:16]}" + (f"; {self.detail}" if self.detail else "")
        )


class Baseline:
    """The baselines under ``root`` for the fingerprint ``current``."""

    def __init__(self, root: Path, current: str, keep_outputs: bool) -> None:
        self.root = root
        self.current = current
        self.keep_outputs = keep_outputs
        self._loaded: dict[str, dict[str, Any]] = {}
        self._others: list[str] | None = None  # other fingerprints, newest first

    def _file(self, fp: str) -> Path:
        return self.root / fp / "baseline.json"

    def _read(self, fp: str) -> dict[str, Any]:
        """One fingerprint's baseline as it is on disk now; empty where there is none. A damaged
        one is an error naming the file: silently starting afresh would overwrite what it held."""
        path = self._file(fp)
        try:
            text = read_regular(path, MAX_BASELINE_BYTES).decode()
        except (FileNotFoundError, NotADirectoryError):  # none yet (writing it says the rest)
            return {"environment": {}, "tests": {}}
        except UnusableInput as exc:
            raise BaselineError(f"{exc.strerror}; a baseline is a JSON file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BaselineError(f"{path}: cannot be read ({exc})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BaselineError(
                f"{path}: damaged, not JSON ({json_problem(exc)}); "
                "restore it or remove it to start that baseline afresh"
            ) from None
        tests = data.get("tests") if isinstance(data, dict) else None
        if not isinstance(tests, dict) or not all(
            isinstance(h, dict) and all(isinstance(v, str) for v in h.values())
            for h in tests.values()
        ):
            raise BaselineError(
                f"{path}: not a baseline: expected "
                "{'environment': ..., 'tests': {test: {output: sha256}}}; "
                "restore it or remove it to start that baseline afresh"
            )
        return {"environment": data.get("environment", {}), "tests": tests}

    def _load(self, fp: str) -> dict[str, Any]:
        """One fingerprint's baseline, read once per run (the pytest process reads them all at
        its start, and forked workers inherit what it read): re-reading it for every test made a
        run quadratic in its tests. Only :meth:`record` reads the disk again, under its lock."""
        if fp not in self._loaded:
            self._loaded[fp] = self._read(fp)
        return self._loaded[fp]

    def check(self) -> None:
        """Read every baseline under the root once: a damaged one stops the run before tests.
        What was read serves the whole run."""
        others = sorted(
            (p for p in self.root.glob("*/baseline.json") if p.parent.name != self.current),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        self._others = [p.parent.name for p in others]
        for fp in (self.current, *self._others):
            self._load(fp)

    def reference(self, nodeid: str) -> tuple[str, dict[str, str]] | None:
        """The baseline for ``nodeid``: this fingerprint's, else the newest other one's."""
        if self._others is None:
            self.check()
        mine = self._load(self.current)["tests"].get(nodeid)
        if mine:
            return self.current, mine
        for fp in self._others or []:
            entry = self._load(fp)["tests"].get(nodeid)
            if entry:
                return fp, entry
        return None

    def compare(self, nodeid: str, outputs: dict[str, Any], hashes: dict[str, str]) -> list[Drift]:
        """Drifts of ``outputs`` (tensors) against the baseline; keeps them if asked."""
        found = self.reference(nodeid)
        drifts: list[Drift] = []
        if found is not None:
            fp, old = found
            for name, new_hash in hashes.items():
                old_hash = old.get(name)
                if old_hash is None or old_hash == new_hash:
                    continue
                drifts.append(
                    Drift(
                        nodeid,
                        name,
                        old_hash,
                        new_hash,
                        fp == self.current,
                        self._largest(fp, nodeid, name, outputs[name]),
                    )
                )
        if self.keep_outputs and (found is None or found[0] != self.current):
            try:
                self._keep(nodeid, outputs)
            except OSError as exc:  # a full disk: the comparison stands, the outputs are lost
                warnings.warn(
                    f"trtctx baseline: the outputs of {nodeid} were not kept under "
                    f"{self.root / self.current / 'outputs'} ({exc.strerror or exc})",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return drifts

    def _largest(self, fp: str, nodeid: str, name: str, tensor: Any) -> str:
        path = self.root / fp / "outputs" / _safe(nodeid, name)
        if not path.exists():
            return "outputs were not kept (--trtctx-baseline-keep) for the baseline"
        import torch

        old = torch.load(path, weights_only=True).float()
        new = tensor.detach().cpu().float()
        if old.shape != new.shape:
            return f"shape {tuple(old.shape)} -> {tuple(new.shape)}"
        diff = (new - old).abs()
        flat = int(diff.flatten().nan_to_num(float("inf")).argmax().item())
        return (
            f"largest |diff| {diff.flatten()[flat].item():.6g} at flat index {flat} "
            f"({old.flatten()[flat].item():.6g} -> {new.flatten()[flat].item():.6g})"
        )

    def _keep(self, nodeid: str, outputs: dict[str, Any]) -> None:
        import os
        import tempfile

        import torch

        folder = self.root / self.current / "outputs"
        folder.mkdir(parents=True, exist_ok=True)
        for name, tensor in outputs.items():
            target = folder / _safe(nodeid, name)
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
            os.close(fd)
            torch.save(tensor.detach().cpu(), tmp)
            os.replace(tmp, target)

    def record(self, env: dict[str, Any], results: dict[str, dict[str, str]]) -> int:
        """Add entries for tests this fingerprint has none for; return how many were added.

        Runs that share a baseline folder (one CI job per order) record at once: the file is
        read, merged and replaced under a lock beside it, so that no run's entries are lost.
        BaselineError says where the new entries went instead when the file cannot be written.
        """
        path = self._file(self.current)
        with locked(path.with_name(LOCK_NAME)):
            data = self._read(self.current)  # as it is now: another run may have added entries
            data["environment"] = env
            added = 0
            for nodeid, hashes in results.items():
                if hashes and nodeid not in data["tests"]:
                    data["tests"][nodeid] = hashes
                    added += 1
            if added:
                where, why = save_json(path, data)
                if where is None:
                    raise BaselineError(f"{why}; the {added} new entries were not saved")
                if why is not None:
                    raise BaselineError(f"{why}; the {added} new entries were saved to {where}")
        self._loaded[self.current] = data
        return added


class BaselineKeeper:
    """``--trtctx-baseline``: compare outputs with their baseline, record new ones at the end.

    Registered as ``trtctx-baseline`` when asked for. It runs in the process that runs each test
    (its verdict goes into the call's report) and in the pytest process (which records).
    """

    def __init__(self, config: pytest.Config, root: Path, keep: bool) -> None:
        self.config = config
        self.root = root
        self.keep = keep
        self.baseline: Baseline | None = None
        self.env: dict[str, Any] = {}
        self.results: dict[str, dict[str, str]] = {}
        self.upgrade_drifts: list[str] = []
        self.added = 0
        self.failure = ""  # why the new entries could not be recorded where asked

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # In the pytest process, before any worker is forked: workers inherit the answer.
        self.env = environment()
        self.baseline = Baseline(self.root, fingerprint(self.env), self.keep)
        try:
            self.baseline.check()
        except BaselineError as exc:
            raise pytest.UsageError(f"--trtctx-baseline: {exc}") from None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        hashes = properties(report).get(OUTPUTS_PROPERTY)
        outputs = item.stash.get(OUTPUTS, None)
        if (
            call.when == "call"
            and report.passed
            and self.baseline is not None
            and isinstance(hashes, dict)
            and outputs is not None
        ):
            self._check(report, item.nodeid, dict(outputs.current), hashes)
        return report

    def _check(
        self,
        report: pytest.TestReport,
        nodeid: str,
        outputs: dict[str, Any],
        hashes: dict[str, str],
    ) -> None:
        assert self.baseline is not None
        drifts = self.baseline.compare(nodeid, outputs, hashes)
        same = [d.describe() for d in drifts if d.same_environment]
        other = [d.describe() for d in drifts if not d.same_environment]
        if same:
            report.outcome = "failed"
            report.longrepr = "trtctx baseline: outputs drifted in the same environment\n" + (
                "\n".join(f"  {line}" for line in same)
            )
            report.user_properties.append((SIGNATURE_PROPERTY, "baseline: output drifted"))
        if other:
            report.sections.append(("trtctx baseline (another environment)", "\n".join(other)))
            report.user_properties.append((DRIFT_PROPERTY, other))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = properties(report)
        hashes = props.get(OUTPUTS_PROPERTY)
        if report.when == "call" and report.passed and isinstance(hashes, dict):
            self.results[report.nodeid] = hashes
        drift = props.get(DRIFT_PROPERTY)
        if isinstance(drift, list):
            self.upgrade_drifts.extend(f"{report.nodeid}: {line}" for line in drift)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.baseline is not None and not hasattr(self.config, "workerinput"):
            try:
                self.added = self.baseline.record(self.env, self.results)
            except BaselineError as exc:
                self.failure = str(exc)
                unsaved(session)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tr = terminalreporter
        if self.baseline is None:
            return
        if self.failure:
            tr.write_line(f"trtctx baseline: {self.failure}")
        else:
            tr.write_line(
                f"trtctx baseline: {self.root / self.baseline.current} (+{self.added} new entries)"
            )
        if self.upgrade_drifts:
            tr.write_line(
                f"trtctx baseline: {len(self.upgrade_drifts)} output(s) differ from another "
                "environment's baseline:"
            )
            for line in self.upgrade_drifts[:20]:
                tr.write_line(f"  {line}")
