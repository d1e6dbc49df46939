"""Windows: output folders are locked without ``fcntl`` (``msvcrt.locking``), and Ray starts without signal masks.

Without a lock, two batch runs into one ``--out`` each wrote their results and manifest over
the other's (an outside portability review). Here ``fcntl`` is hidden and ``msvcrt`` is a fake
that keeps Windows' rule: a byte range locked through one handle refuses every other handle
until it is unlocked.
"""

from __future__ import annotations

import errno
import os
import sys
import types
from pathlib import Path

import pytest

from densedet_tile.batch import Manifest
from densedet_tile.errors import InvalidInputError
from densedet_tile.io import OutputLock


class FakeMsvcrt(types.ModuleType):
    LK_UNLCK, LK_LOCK, LK_NBLCK = 0, 1, 2

    def __init__(self, fail_errno: int | None = None) -> None:
        super().__init__("msvcrt")
        self.held: dict[tuple[int, int, int], int] = {}  # (device, inode, offset) -> fd
        self.fail_errno = fail_errno

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        assert nbytes == 1
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino, os.lseek(fd, 0, os.SEEK_CUR))
        if mode == self.LK_UNLCK:
            if self.held.get(key) != fd:
                raise OSError(errno.EACCES, "not locked by this handle")
            del self.held[key]
            return
        assert mode == self.LK_NBLCK
        if self.fail_errno is not None:
            raise OSError(self.fail_errno, "no locks here")
        if key in self.held:
            raise OSError(errno.EACCES, "Permission denied")
        self.held[key] = fd


@pytest.fixture
def windows(monkeypatch) -> FakeMsvcrt:
    fake = FakeMsvcrt()
    monkeypatch.setitem(sys.modules, "fcntl", None)  # import fcntl -> ImportError
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    return fake


def test_a_second_batch_run_into_one_folder_is_refused_without_fcntl(tmp_path: Path, windows: FakeMsvcrt) -> None:
    a, b = Manifest(tmp_path), Manifest(tmp_path)
    a.lock()
    assert len(windows.held) == 1
    # the lock sits past the content: the holder still appends through its other handles
    (_, _, offset), = windows.held
    a.append({"event": "start"})
    assert offset > a.log_path.stat().st_size
    with pytest.raises(InvalidInputError, match="another densedet-tile batch run is writing there"):
        b.lock()
    a.unlock()
    assert windows.held == {}  # unlocked before the handle closed, as Windows asks
    b.lock()
    assert len(windows.held) == 1
    b.unlock()


def test_an_output_lock_is_exclusive_without_fcntl(tmp_path: Path, windows: FakeMsvcrt) -> None:
    first, second = OutputLock(tmp_path / ".state.lock"), OutputLock(tmp_path / ".state.lock")
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert windows.held == {}
    assert second.acquire()
    second.release()


def test_a_file_system_without_locks_runs_unlocked_on_windows(tmp_path: Path, monkeypatch) -> None:
    fake = FakeMsvcrt(fail_errno=errno.EINVAL)
    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    a, b = Manifest(tmp_path), Manifest(tmp_path)
    a.lock()
    b.lock()  # not refused: there is nothing to lock with
    assert OutputLock(tmp_path / ".x.lock").acquire()
    assert not (tmp_path / ".x.lock").exists()  # and no lock file is left behind
    a.unlock()
    b.unlock()


def test_ray_start_up_is_not_shielded_where_there_are_no_signal_masks(monkeypatch) -> None:
    ray_pool = pytest.importorskip("densedet_tile.distributed.ray_pool")
    no_masks = types.SimpleNamespace(**{k: v for k, v in vars(ray_pool.signal).items() if k != "pthread_sigmask"})
    monkeypatch.setattr(ray_pool, "signal", no_masks)  # Windows' signal module has no pthread_sigmask
    connect = ray_pool._HeldSignals()._blocked(lambda *a, **k: ("connected", a, k))
    assert connect(1, x=2) == ("connected", (1,), {"x": 2})


def test_suggested_command_lines_are_quoted_for_the_users_shell(monkeypatch) -> None:
    from densedet_tile.cli.options import shell_quote

    assert shell_quote("my photos/a'b") == "'my photos/a'\"'\"'b'"  # POSIX shells
    monkeypatch.setattr(sys, "platform", "win32")
    assert shell_quote(r"C:\My photos\aisle.jpg") == r'"C:\My photos\aisle.jpg"'  # cmd.exe takes no '...'
    assert shell_quote(r"C:\photos") == r"C:\photos"


def test_apples_mps_device_is_named_as_not_supported() -> None:
    from densedet_tile.errors import InvalidInputError
    from densedet_tile.types import check_device

    with pytest.raises(InvalidInputError, match=r"got 'mps' \(Apple's mps is not supported: use cpu\)"):
        check_device("mps")


def test_a_file_system_that_cannot_seek_past_the_end_runs_unlocked(tmp_path: Path, monkeypatch) -> None:
    fake = FakeMsvcrt()
    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    real = os.lseek

    def short_seek(fd, pos, how):
        if pos >= 1 << 32:
            raise OSError(22, "Invalid argument")
        return real(fd, pos, how)

    monkeypatch.setattr(os, "lseek", short_seek)
    m = Manifest(tmp_path)
    m.lock()  # no error: nothing to lock with there
    assert OutputLock(tmp_path / ".y.lock").acquire()
    m.unlock()


def test_cmd_exe_quotes_its_own_special_characters(monkeypatch) -> None:
    from densedet_tile.cli.options import shell_quote

    monkeypatch.setattr(sys, "platform", "win32")
    assert shell_quote(r"C:\R&D\shelf") == r'"C:\R&D\shelf"'
    assert shell_quote("") == '""'
