"""pytest-rerunfailures under isolation: which attempt of a test is rerun, decided in its worker.

pytest-rerunfailures reruns a failed test inside its own ``pytest_runtest_protocol``, in the
process that ran it. An isolated test runs in a forked worker through ``runtestprotocol``, which
that hook never wraps, so its reruns would never happen. Here the worker judges each attempt as
pytest-rerunfailures would (its count, its ``--only-rerun``/``--rerun-except`` filters, the
``flaky`` marker's condition, its delay), marks the attempt's failed reports ``rerun`` as it does,
and the parent gives the rerun to a **fresh** worker: every attempt meets the test's order fresh,
as the first did. Attempts are counted by the parent, not by a worker that dies with each one.

The rules are pytest-rerunfailures' own functions where it has them (checked with 16.x); where a
version lacks one, the plain rule stands in: a failed, non-xfail attempt is rerun while attempts
remain. ``--max-suite-reruns`` is not applied to isolated tests (its count lives in one process).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

#: The module pytest-rerunfailures is, once imported.
MODULE = "pytest_rerunfailures"


def _plugin(config: Any) -> Any:
    """pytest-rerunfailures' module where it is registered in this run, else None."""
    module = sys.modules.get(MODULE)
    if module is None or not config.pluginmanager.is_registered(module):
        return None
    return module


def judge(item: Any, reports: list[Any], attempt: int) -> bool:
    """After attempt number ``attempt`` (0: the first run) of ``item``: mark its reports as
    pytest-rerunfailures would, and say whether the test is to run again."""
    module = _plugin(item.config)
    if module is None:
        return False
    excluded: Callable[[Any], bool] = getattr(module, "_is_rerun_path_excluded", lambda _i: False)
    if excluded(item):
        return False
    reruns = module.get_reruns_count(item)
    if not reruns:
        return False
    item.execution_count = attempt + 1
    failures: list[Any] = getattr(module, "_get_reruns_condition_failures", lambda _i: [])(item)
    condition = module.get_reruns_condition(item, failures)
    should_not: Callable[..., bool] = getattr(module, "_should_not_rerun", _plain_should_not)
    triggered = False
    for report in reports:
        report.rerun = attempt
        if triggered:
            if report.failed:
                report.outcome = "rerun"
        elif not should_not(item, report, reruns, condition):
            report.outcome = "rerun"
            triggered = True
    if triggered:
        delay = float(module.get_reruns_delay(item) or 0)
        factor = float(getattr(module, "get_reruns_delay_backoff_factor", lambda _i: 1.0)(item))
        if delay > 0:
            time.sleep(delay * factor**attempt)
    return triggered


def _plain_should_not(item: Any, report: Any, reruns: int, condition: bool) -> bool:
    """The rule without pytest-rerunfailures' own: no rerun for a passing or xfail phase, or
    once the attempts are spent."""
    spent = int(item.execution_count) > reruns
    return spent or not report.failed or hasattr(report, "wasxfail") or not condition
