"""A request that runs while another thread imports torch (a service warming up a torch model as
it serves) waits for that import instead of failing on the half-built module (an outside review:
"partially initialized module 'torch' has no attribute 'cuda'" on every request meanwhile)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")

SCRIPT = textwrap.dedent("""
    import sys, threading
    import numpy as np
    import densedet_tile as dt
    assert "torch" not in sys.modules

    class MyDetector:
        def predict(self, tiles):
            return [dt.Detections(xyxy=np.array([[10, 10, 50, 50]], np.float32), scores=np.full(1, .9, np.float32),
                                  labels=np.zeros(1, np.int64)) for t in tiles]

    started, done, errors, runs = threading.Event(), threading.Event(), [], [0]

    def serve():
        while not done.is_set():
            try:
                dt.detect(np.zeros((256, 256, 3), np.uint8), MyDetector())
                runs[0] += 1
            except Exception as exc:
                errors.append(repr(exc))
            started.set()

    t = threading.Thread(target=serve)
    t.start()
    started.wait()  # requests are being served as the import begins
    import torch
    done.set()
    t.join()
    print(len(errors), runs[0], errors[:1])
""")


def test_requests_wait_for_a_torch_import_in_progress_instead_of_failing():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    n_errors, n_runs, _ = r.stdout.split(" ", 2)
    assert int(n_errors) == 0, r.stdout
    assert int(n_runs) >= 1
