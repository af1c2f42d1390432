"""The conv matrix's engines under our own scenario (and any other selected), held to what each
scenario declares it expects (``trtctx_scenario_expected``)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.trtctx_scenario_expected
@pytest.mark.trtctx_nonzero
def test_conv_under_our_start(trtctx: Any, trtctx_spec: Any) -> None:
    trtctx.check_conv(trtctx_spec)
