import os
import sys
from pathlib import Path

import pytest

# tests/fakes.py holds small detectors shared by several test modules
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module")
def local_ray():
    """A Ray instance on this machine (2 CPUs) for one test module; its workers import the test
    helpers (tests/fakes.py and the test modules) by name."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():  # pragma: no cover - another module left it running
        ray.shutdown()
    here = str(Path(__file__).parent)
    pythonpath = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    yield
    ray.shutdown()
