"""``--trtctx-html=PATH``: the run's HTML page, written at the end of the session.

It collects exactly what the JSON report collects (it is a :class:`~.report.ReportWriter` that
writes a page instead of JSON), so that the page of a run and the page ``pytest-trtctx html``
makes from its report are the same grids. Written like the report: where ``PATH`` cannot be
written, to a new file in the temp folder, the terminal naming it, and the run exits 6 where its
tests alone would have given 0 or 5.
"""

from __future__ import annotations

import shlex

import pytest

from ..checks.outcomes import unsaved
from ..messages import MSG_HTML_NOT_WRITTEN, MSG_HTML_WRITTEN
from .html_page import run_page, save_page
from .report import ReportWriter


class HtmlWriter(ReportWriter):
    """Registered as ``trtctx-html`` when ``--trtctx-html`` is given."""

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):
            return  # an xdist worker: the controller writes the page
        self.finish(session)
        command = "pytest " + shlex.join(map(str, self.config.invocation_params.args))
        where, why = save_page(self.path, run_page(self.data(), command))
        if why is not None:
            unsaved(session)
        if where is None:
            self.written = MSG_HTML_NOT_WRITTEN.format(why=why)
        else:
            self.written = MSG_HTML_WRITTEN.format(where=where) + (
                f" instead: {why}" if why else ""
            )
