"""Training tests run torch on one thread: their models are tiny, and two OpenMP threads on a
2-core machine shared with another job spin-wait for each other (a test took 15-21 s instead
of 2 s). Bitwise results do depend on it (the reduction order), so it is set for each module
before its module-scoped runs, which the resume tests compare with runs inside the tests."""

from __future__ import annotations

import pytest

from fakes import one_torch_thread


@pytest.fixture(scope="module", autouse=True)  # module: before the modules' own trained fixtures
def _one_torch_thread():
    try:
        import torch  # noqa: F401
    except ImportError:  # a light environment: the tests that need torch skip themselves
        yield
        return
    with one_torch_thread():
        yield
