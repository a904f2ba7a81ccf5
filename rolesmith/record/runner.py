"""Run the recorded command: its own process group, stdio passed through, signals forwarded."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from rolesmith.errors import RolesmithError

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class CommandNotFound(RolesmithError):
    exit_code = 127


@dataclass(frozen=True, kw_only=True, slots=True)
class ChildExit:
    returncode: int  # as a shell reports it: 128 + N when killed by signal N
    signal: int | None  # the signal that killed the child, if one did
    forwarded: int | None  # a signal rolesmith received and forwarded (Ctrl-C, SIGTERM)


def _resolve(command: Sequence[str], env: Mapping[str, str], cwd: Path | None) -> str:
    exe = command[0]
    if os.sep in exe:
        path = Path(cwd or ".") / exe
        if path.exists():
            return exe
    elif shutil.which(exe, path=env.get("PATH", os.defpath)):
        return exe
    raise CommandNotFound(f"{exe}: command not found; give the program to record after `--` (e.g. "
                          f"`rolesmith record -- python app.py`)")


@contextlib.contextmanager
def _forwarding(pgid: int, received: list[int]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _foreground(fd: int) -> int | None:
    """The terminal's foreground group, when ``fd`` is our controlling terminal."""
    try:
        return os.tcgetpgrp(fd) if os.isatty(fd) else None
    except OSError:
        return None


def run(command: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> ChildExit:
    """Run ``command`` in a new process group and wait for it.

    The group lets rolesmith signal every descendant at once. When stdin is a terminal the group
    is made the terminal's foreground group (as a shell does), so the child can read the tty and
    Ctrl-C reaches it directly; rolesmith takes the terminal back when it exits.
    """
    _resolve(command, env, cwd)
    stdin_fd = 0  # the child inherits fd 0, whatever sys.stdin is in this process
    tty = _foreground(stdin_fd) == os.getpgrp()

    def preexec() -> None:
        os.setpgid(0, 0)
        if tty:
            signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            with contextlib.suppress(OSError):
                os.tcsetpgrp(stdin_fd, os.getpgrp())
            signal.signal(signal.SIGTTOU, signal.SIG_DFL)

    group: dict[str, object] = {"preexec_fn": preexec}
    if not tty and sys.version_info >= (3, 11):
        # No Python code between fork and exec: preexec_fn is unsafe with the capture threads running.
        group = {"process_group": 0}
    try:
        proc = subprocess.Popen(list(command), env=dict(env), cwd=cwd, **group)  # type: ignore[call-overload]  # noqa: PLW1509
    except (FileNotFoundError, PermissionError) as err:
        raise CommandNotFound(f"{command[0]}: cannot run: {err.strerror}; check the command after `--`") from err
    received: list[int] = []
    try:
        with _forwarding(proc.pid, received):
            while True:
                try:
                    code = proc.wait()
                    break
                except KeyboardInterrupt:  # handler not installed (not main thread): forward by hand
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGINT)
    finally:
        if tty:
            old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            with contextlib.suppress(OSError):
                os.tcsetpgrp(stdin_fd, os.getpgrp())
            signal.signal(signal.SIGTTOU, old)
    if code < 0:
        return ChildExit(returncode=128 - code, signal=-code, forwarded=received[-1] if received else None)
    return ChildExit(returncode=code, signal=None, forwarded=received[-1] if received else None)
