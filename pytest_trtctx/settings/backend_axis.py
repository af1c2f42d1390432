"""Several backends in one run: ``--trtctx-backend=cuda,triton,cudnn``.

A test that builds engines (it takes ``trtctx``, hence an order) and names no backend of its own
(marker ``trtctx_backend``) runs once per backend listed. The backend rides on the order's
parameter, so that the first backend listed keeps the ids it has alone (a report of it compares
with a run of that backend alone: ``pytest-trtctx diff``) and each other adds its name after the
order: ``test_conv[driver-first-triton-k3s1...]``. cuDNN's plan slots are tests of their own there
too: ``driver-first-cudnn-plan0-...``. Alone, cuDNN's ids end in the slot (``plan_slots.py``):
listed first, its ids are the one exception to the first backend keeping them
(``vendors`` lists Triton first for that reason).

Under ``--trtctx-isolate=order`` each backend's tests of an order get processes of their own
(``isolation/grouping.py``): a backend's outcomes are those of a run of it alone.
"""

from __future__ import annotations

from typing import Any

import pytest

from ..backends.plans import BACKEND as CUDNN
from ..backends.plans import slot_id
from ..messages import MARK_BACKEND
from .config import settings_of

#: The fixture a listed backend is handed through (in the ``trtctx`` fixture's closure).
PARAM = "trtctx_backend"


def multiplied(metafunc: pytest.Metafunc) -> bool:
    """Whether the test runs once per listed backend."""
    s = settings_of(metafunc.config)
    return (
        len(s.backends.value) > 1
        and s.active
        and "trtctx" in metafunc.fixturenames
        and metafunc.definition.get_closest_marker(MARK_BACKEND) is None
    )


def order_params(orders: tuple[str, ...], backends: tuple[str, ...], slots: int) -> list[Any]:
    """``(order, backend, plan slot)`` for each order, backend and cuDNN plan slot (``slots``:
    0 for a test that builds no spec of the matrix: cuDNN's own choice), with its id."""
    params = []
    for order in orders:
        for first, backend in enumerate(backends):
            head = order if first == 0 else f"{order}-{backend}"
            if backend == CUDNN and slots:
                params += [
                    pytest.param(order, backend, n, id=f"{head}-{slot_id(n)}") for n in range(slots)
                ]
            else:
                params.append(pytest.param(order, backend, None, id=head))
    return params


@pytest.fixture
def trtctx_backend(request: pytest.FixtureRequest) -> str | None:
    """The backend this test runs where the run lists several (None: the run's one backend)."""
    backend = getattr(request, "param", None)
    return backend if isinstance(backend, str) else None
