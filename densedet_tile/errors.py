"""Exceptions raised by densedet-tile.

Every error the engine raises on purpose derives from :class:`DensedetError`, so callers can
catch the library's errors in one place; each also derives from the builtin that fits the
failure (``ValueError`` for bad values, ``OSError`` for unreadable inputs) so generic handlers
keep working. Messages are one line and name the input they are about.
"""

from __future__ import annotations

__all__ = [
    "DensedetError",
    "InvalidInputError",
    "ImageReadError",
    "DetectorError",
    "MissingDependencyError",
    "one_line",
    "caller_level",
]


def shown_name(name: str) -> str:
    """A file name or path as one line of a message: its control characters written as escapes
    (``\\n``, ``\\r``, ``\\x1b``...; a name may hold them, and printed raw a line break splits
    the line in two and a terminal's escape sequence recolours or rewrites it)."""
    return printable(name)


def printable(text: str) -> str:
    """``text`` for one line of a terminal: every character that is not printable (line breaks,
    tabs, ESC and other control characters, a name's undecodable bytes) written as Python writes
    it in a string's repr; the rest, non-ASCII letters included, as it is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def utf8_text(text: str) -> str:
    """``text`` with the bytes of a file name that are not UTF-8 (Python's surrogate escapes, as
    ``os.fsdecode`` makes them) written as ``\\xe9``: text that UTF-8 takes, for a report file or
    a library that encodes strictly (a name such as ``caf\\xe9.jpg`` from an old camera)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


#: The stop signal (SIGINT, SIGTERM...) the running command received, while it runs (set by the
#: command line's ``StopSignals``): a C extension that was importing when it came reports an
#: ImportError instead, which must not read as a broken install.
STOP_RECEIVED: list[int | None] = [None]


def stop_reason(signum: int | None) -> str:
    """What stopped a run, for its last line and a batch manifest's ``stopped``: "interrupted"
    (Ctrl-C, or no signal known) or "stopped by SIGTERM" (another stop signal)."""
    import signal

    if not isinstance(signum, int) or signum == signal.SIGINT:
        return "interrupted"
    try:
        return f"stopped by {signal.Signals(signum).name}"
    except ValueError:
        return f"stopped by signal {signum}"


def one_line(exc: BaseException) -> str:
    """An exception's message folded onto one line (its type name when it has no message). A
    system error reads ``<file>: <what went wrong>`` rather than Python's ``[Errno 21] ...: 'file'``."""
    if isinstance(exc, OSError) and exc.strerror and exc.errno is not None and len(exc.args) >= 2:
        what = " ".join(str(exc.strerror).split())
        if exc.filename is None:
            return what
        # (two files: a link or a rename from one to the other; both named, as Python does)
        names = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else f"{exc.filename}"
        return f"{names}: {what}"
    return " ".join(str(exc).split()) or type(exc).__name__


def clipped(text: str, most: int = 240) -> str:
    """``text`` cut to about ``most`` characters at a space, with "..." where it was cut (a
    message cut mid-word, "torch.Size([8, 3, 3,)", read as the whole of it: an outside review)."""
    if len(text) <= most:
        return text
    cut = text.rfind(" ", 0, most)
    return text[: cut if cut > most // 2 else most].rstrip(" ,;:") + " ..."


def caller_level() -> int:
    """The ``stacklevel`` of the first frame outside this package, for a warning that should
    name the user's line (whichever entry point they called) rather than the engine's. The
    command line counts as the user: a warning raised under it names its frame, inside the
    package, so the command shows it as one of its own lines."""
    import os
    import sys

    pkg = os.path.dirname(os.path.abspath(__file__)) + os.sep
    cli = pkg + "cli" + os.sep
    level, frame = 1, sys._getframe(1)
    while frame is not None:
        where = os.path.abspath(frame.f_code.co_filename)
        if not where.startswith(pkg) or where.startswith(cli):
            break
        level += 1
        frame = frame.f_back
    return level


class DensedetError(Exception):
    """Base class of all errors raised by densedet-tile."""


class InvalidInputError(DensedetError, ValueError):
    """A value handed to the engine (an option, an array, a box) is not acceptable."""


class ImageReadError(DensedetError, OSError):
    """An input image is missing, unreadable, truncated, empty or of an unknown format."""


class DetectorError(DensedetError, RuntimeError):
    """A detector could not be built, or returned something malformed."""


class MissingDependencyError(DensedetError, ImportError):
    """A package is needed for the requested feature but is not installed.

    ``extra`` names the densedet-tile extra that brings it; None for a package that the plain
    install should have brought (it was removed or failed to install). ``cause``, the
    ImportError met, tells a missing package from one that is there but fails to import.
    """

    def __init__(self, feature: str, package: str, extra: str | None, cause: BaseException | None = None) -> None:
        how = f"pip install 'densedet-tile[{extra}]'" if extra else f"pip install {package}"
        # ``cause``: the ImportError met; a package that is there but fails to import (a build
        # for another numpy, a missing shared library) is not "not installed"
        # missing: the package's own top-level module was not found (mmcv-lite is imported as
        # mmcv); a submodule or another module not found means a broken install
        names = {package, package.replace("-", "_"), package.split("-")[0]}
        broken = cause is not None and not (isinstance(cause, ModuleNotFoundError) and _not_there(cause.name, names))
        if broken and STOP_RECEIVED[0] is not None:  # the import was cut short by the stop, not broken
            msg = f"{stop_reason(STOP_RECEIVED[0])} while {feature} loaded '{package}'"
        elif broken:
            msg = (f"{feature} needs the '{package}' package, which is installed but cannot be imported "
                   f"({type(cause).__name__}: {one_line(cause)[:300]}); reinstall it: "
                   f"pip install --force-reinstall {package}")
        else:
            msg = f"{feature} needs the '{package}' package, which is not installed; install it with: {how}"
        super().__init__(msg)
        self.feature = feature
        self.package = package
        self.extra = extra


def _not_there(name: str | None, packages: set[str]) -> bool:
    """Whether the module ``name`` that was not found is one of ``packages`` or lies inside one
    that is not installed either (``import a.b`` without ``a``)."""
    if not name:
        return False
    if name in packages:
        return True
    top = name.split(".")[0]
    if top not in packages:
        return False
    import importlib.util

    try:
        return importlib.util.find_spec(top) is None
    except (ImportError, ValueError):
        return True
