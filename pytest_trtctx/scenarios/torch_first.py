"""torch-first: torch's first allocation creates the primary context; engines live there too."""

from __future__ import annotations

from .base import ORDER, Scenario, State


def allocate_with_torch(state: State) -> None:
    """torch allocates on its device: the primary context is created and made current."""
    import torch

    torch.empty(1, device=f"cuda:{state.torch_device}")
    torch.cuda.synchronize(state.torch_device)
    state.steps.append(f"torch allocated on cuda:{state.torch_device} (primary context)")


SCENARIO = Scenario(
    name="torch-first",
    kind=ORDER,
    expected="pass: torch creates the primary context; the engine is built and run in it",
    stands_for=(),
    recipe=allocate_with_torch,
    first_call="torch allocates on the device",
    built_in="primary context",
    run_from="same thread",
)
