"""``densedet_tile.cli.main`` called from a program: what a run changes is put back after it.

Each case runs in a fresh interpreter: pytest's own log handlers on the root logger would hide
the case of a program with no logging set up."""

import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).parents[1]

PRELUDE = f"""
import io, logging, os, sys, threading, warnings
sys.path.insert(0, {str(TESTS)!r})
from PIL import Image
from fakes import blob_image
from densedet_tile.cli import main
from densedet_tile.detector import base
FAKES = {str(TESTS / "fakes.py")!r}
os.makedirs("imgs", exist_ok=True)
Image.fromarray(blob_image(300, 500, (100, 100, 160, 220))).save("imgs/a.png")
DETECT = ["imgs/a.png", "--detector", FAKES + ":make_blob", "--tile", "200", "--overlap", "0.05", "--device", "cpu"]
BATCH = ["batch", "imgs", "--ray", "none", "--detector", FAKES + ":make_blob", "--device", "cpu"]
def state():
    root = logging.getLogger()
    return dict(handlers=list(root.handlers), level=root.level, environ=dict(os.environ),
                quiet=base.QUIET_ONNXRUNTIME_PROCESS, stdout=sys.stdout, stderr=sys.stderr,
                showwarning=warnings.showwarning)
"""


def run_script(tmp_path, body):
    script = tmp_path / "prog.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_a_run_puts_back_logging_environment_streams_and_flags(tmp_path):
    r = run_script(tmp_path, """
        before = state()
        assert main(DETECT + ["--out", "o1"]) == 0
        assert main(BATCH + ["--out", "o2"]) == 0  # sets Ray's display variables for its run
        after = state()
        print("changed:", sorted(k for k in before if before[k] != after[k]))
        logging.getLogger("myapp").warning("my own line")
    """)
    assert "changed: []" in r.stdout
    # the run's warning was the command's line; the program's own line afterwards is not dressed as one
    assert "densedet-tile: WARNING: a.png: the tiles overlap by 10 px" in r.stderr
    assert "my own line" in r.stderr and "densedet-tile: WARNING: [myapp]" not in r.stderr


def test_a_program_with_its_own_logging_keeps_its_handlers_as_they_were(tmp_path):
    r = run_script(tmp_path, """
        buf = io.StringIO()
        handler = logging.StreamHandler(buf)
        handler.setFormatter(logging.Formatter("%(name)s|%(message)s"))
        logging.getLogger().addHandler(handler)
        before = state()
        assert main(DETECT + ["--out", "o1"]) == 0
        assert state() == before and not handler.filters
        logging.getLogger("myapp").warning("hello")
        logging.getLogger("PIL.Image").warning("from pillow")
        print(buf.getvalue())
    """)
    assert "myapp|hello" in r.stdout and "PIL.Image|from pillow" in r.stdout and "[myapp]" not in r.stdout
    assert "densedet_tile.pipeline|a.png: the tiles overlap" in r.stdout  # the run's line, through the program's handler


def test_the_programs_own_environment_changes_during_a_run_are_kept(tmp_path):
    # what another part of the program sets while main() runs (here its detector) is its own:
    # only the variables a verb sets for itself are put back
    r = run_script(tmp_path, """
        with open("setter.py", "w") as f:
            f.write("import os, sys\\nsys.path.insert(0, %r)\\nfrom fakes import make_blob\\n"
                    "def make(**kw):\\n    os.environ['APP_TOKEN'] = 'x'\\n    return make_blob()\\n" % sys.path[0])
        os.environ["APP_MODE"] = "before"
        argv = ["batch", "imgs", "--ray", "none", "--detector", "setter.py:make", "--device", "cpu", "--out", "o3"]
        assert main(argv) == 0
        print("token:", os.environ.get("APP_TOKEN"), "mode:", os.environ.get("APP_MODE"))
    """)
    assert "token: x mode: before" in r.stdout


def test_calls_from_two_threads_leave_the_streams_and_warning_display_as_they_were(tmp_path):
    r = run_script(tmp_path, """
        before = state()
        codes = []
        threads = [threading.Thread(target=lambda k=k: codes.append(main(DETECT + ["--out", f"o{k}"])))
                   for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = state()
        print("codes:", codes, "changed:", sorted(k for k in before if before[k] != after[k]))
    """)
    assert "codes: [0, 0, 0] changed: []" in r.stdout
