"""Who initialised CUDA in the pytest process, when it did.

Tests under an order run in processes forked from the pytest process, which must never have
initialised CUDA. When it has, the tests skip, and the reason names the culprit: the plugin checks
(cheaply: ``/proc/self/maps`` and the open files) before collection and after each collected
module, and remembers the first place where the process was no longer clean.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from .names import MSG_CULPRIT_MODULE, MSG_CULPRIT_STARTUP, MSG_CULPRIT_UNKNOWN
from .probe import cuda_untouched


class CudaWatch:
    """Registered as ``trtctx-cuda-watch`` where tests are forked from this process."""

    def __init__(self) -> None:
        self.culprit: str | None = None

    def check(self, where: str) -> None:
        if self.culprit is None and not cuda_untouched()[0]:
            self.culprit = where

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> None:
        self.check(MSG_CULPRIT_STARTUP)

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        report = yield
        if isinstance(collector, pytest.Module):
            self.check(MSG_CULPRIT_MODULE.format(module=collector.nodeid))
        return report

    def describe(self) -> str:
        """The culprit in words, for MSG_CUDA_TOUCHED."""
        return self.culprit or MSG_CULPRIT_UNKNOWN
