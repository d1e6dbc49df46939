import os
import signal
import sys
from pathlib import Path

import pytest

# tests/fakes.py holds small detectors shared by several test modules
sys.path.insert(0, str(Path(__file__).parent))

# The stop tests send SIGINT, SIGTERM and SIGHUP (to this process or to a child) and expect what
# a terminal's Ctrl-C or a service manager does. A suite started in the background (`pytest &`,
# nohup) inherits them ignored, and an ignored signal stays ignored across exec: the tool rightly
# leaves such a signal alone, and the tests would fail for how they were started. Restored here
# for the session (children get the defaults from it).
for _sig, _handler in (("SIGINT", signal.default_int_handler), ("SIGTERM", signal.SIG_DFL),
                       ("SIGHUP", signal.SIG_DFL)):
    if hasattr(signal, _sig) and signal.getsignal(getattr(signal, _sig)) == signal.SIG_IGN:
        signal.signal(getattr(signal, _sig), _handler)

try:  # property tests draw the same examples on every run and machine: a test must not pass
    # or fail by the luck of the draw (the example database would also carry one run's finds
    # into the next)
    from hypothesis import settings as _hyp_settings

    _hyp_settings.register_profile("densedet-tile", derandomize=True, database=None)
    _hyp_settings.load_profile("densedet-tile")
    # ... which derandomize alone does not give: Hypothesis (6.13x on) also draws numbers written
    # in the local modules already imported, so the examples changed with the tests selected, the
    # checkout's path and any constant edited in the package (an outside review). No such draws.
    from hypothesis.internal.conjecture import providers as _hyp_providers

    if hasattr(_hyp_providers, "_get_local_constants") and hasattr(_hyp_providers, "Constants"):
        _hyp_providers._get_local_constants = lambda: _hyp_providers.Constants()
except ImportError:  # pragma: no cover - hypothesis comes with the [test] extra
    pass

# Ray kills workers when the machine's memory passes 95 %, whoever uses it: on a shared machine
# a test's worker was killed for another program's memory (an outside review). The tests' Ray
# instances (here and in the processes they start) run without that monitor.
os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")


@pytest.fixture(scope="module")
def local_ray():
    """A Ray instance on this machine (2 CPUs) for one test module; its workers import the test
    helpers (tests/fakes.py and the test modules) by name."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():  # pragma: no cover - another module left it running
        ray.shutdown()
    here = str(Path(__file__).parent)
    pythonpath = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    # address="local": a new local instance even where RAY_ADDRESS names a cluster (ray.init would
    # join it, and refuses num_cpus there)
    from densedet_tile.distributed.ray_pool import _short_temp_dir

    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,  # same on a GPU box
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, **_short_temp_dir())  # (a long TMPDIR)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def _package_log_level():
    """The package logger's level as each test found it: a verb's entry point called in process
    with --debug (batch_main, audit_main...) sets it to DEBUG for the process, and a later test
    that looks at the records it logs saw a traceback record only when it ran after such a test
    (tests/test_batch.py then tests/cli/test_engine_errors_named.py failed; the suite's order hid it)."""
    import logging

    log = logging.getLogger("densedet_tile")
    level = log.level
    yield
    log.setLevel(level)


@pytest.fixture
def default_stop_handlers():
    """The stop signals at their default handlers for each test, as in a fresh process: a library
    loaded by an earlier test (Ray) installs its own SIGTERM handler, and the command then leaves
    that one in place (StopSignals takes over a default handler only)."""
    import signal

    stops = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    saved = {s: signal.getsignal(s) for s in stops}
    for s in stops:
        signal.signal(s, signal.SIG_DFL)
    yield
    for s, h in saved.items():
        signal.signal(s, signal.SIG_DFL if h is None else h)
