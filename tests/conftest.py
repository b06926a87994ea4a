"""Fixtures shared by the unit tests."""

import pytest
import torch


@pytest.fixture
def float64_by_default():
    """Run a test in float64 (closed forms compared to 1e-10), then restore the default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
