"""Small helpers shared by the benchmark scripts: the machine line and writing a report."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence


def machine_line() -> str:
    """CPU model (from lscpu when present), visible logical CPUs and the Python version."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"{model}, {os.cpu_count()} logical CPUs visible, Python {platform.python_version()}"


def publish(report: dict[str, Any], to_markdown: Callable[[dict[str, Any], str], str], *, script: str,
            argv: Sequence[str] | None, json_path: str | None, append_md: str | None) -> None:
    """Print the report as markdown (with the exact command), and save it where asked."""
    args = list(argv if argv is not None else sys.argv[1:])
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(script), *args])
    md = to_markdown(report, command)
    print(md)
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=1))
    if append_md:
        with open(append_md, "a", encoding="utf-8") as fh:
            fh.write("\n" + md)


def save_page(path: str | Path | None, text: str) -> None:
    """Print a results page; write it to ``path`` too when given (atomically: a page under
    benchmarks/ holds notes beside the generated tables, so it is only replaced on request)."""
    print(text.rstrip("\n"))
    if path is None:
        print("(not saved: pass --out FILE to keep this page)", file=sys.stderr)
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print(f"wrote {out}", file=sys.stderr)


def run_script(main: Callable[[], int], name: str) -> int:
    """Run a script's ``main``; a bad input (a missing file, an unknown name, a refused option)
    ends it with one line naming the problem and exit status 2, not a traceback."""
    import sys

    from densedet_tile.errors import DensedetError

    try:
        return int(main() or 0)
    except (DensedetError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
