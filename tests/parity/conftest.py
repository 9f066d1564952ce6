import contextlib
import os

import pytest
import torch

pytest.importorskip("segment_anything", reason="parity tests need the official segment-anything package")

# SEGANY_PARITY_UNDER=inference_mode (or no_grad) runs every parity test's body under that autograd mode,
# segany and the official package alike: `SEGANY_PARITY_UNDER=inference_mode pytest tests/parity`.
_MODES = {"": contextlib.nullcontext, "inference_mode": torch.inference_mode, "no_grad": torch.no_grad}


def pytest_configure(config):
    config.addinivalue_line("markers", "own_autograd_mode: the test sets autograd modes itself (training, caches)")


@pytest.fixture(autouse=True)
def _autograd_mode(request):
    name = os.environ.get("SEGANY_PARITY_UNDER", "")
    if request.node.get_closest_marker("own_autograd_mode"):
        name = ""
    if name not in _MODES:
        raise pytest.UsageError(f"SEGANY_PARITY_UNDER must be one of {sorted(_MODES)}, got {name!r}.")
    with _MODES[name]():
        yield


@pytest.fixture(scope="module")
def fixture_twins():
    """The trained fixture model (segany) and the official model with the same weights."""
    from support import FIXTURE, fixture_model, official_sam

    ours = fixture_model()
    theirs = official_sam(FIXTURE)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs
