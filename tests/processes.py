"""Running ``python -m ...`` commands in subprocesses for the tests of the
commands, the demo and gunicorn: a clean environment, and a stop that
always reaps the process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent


def environment(paths: Sequence[Path | str] = (), **extra: str) -> dict[str, str]:
    """os.environ with the checkout (and ``paths``) importable and no
    samplez settings leaking in from the developer's shell."""
    samplez_settings = ("SAMPLEZ_MEMCACHE", "SAMPLEZ_REDIS", "SAMPLEZ_AUTH", "SAMPLEZ_METRICS_AUTH")
    env = {k: v for k, v in os.environ.items() if k not in samplez_settings}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), str(ROOT)])
    env.update(extra)
    return env


def python_m(module: str, *args: str, paths: Sequence[Path | str] = (), **popen: Any) -> subprocess.Popen:
    """``python -m module args`` with text pipes for stdout and stderr."""
    options: dict[str, Any] = {"cwd": ROOT, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    options.update(popen)
    return subprocess.Popen([sys.executable, "-m", module, *args], env=environment(paths), **options)


def stop(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str, str]:
    """SIGTERM ``proc`` if it still runs and wait for it (killed if it
    outlives ``timeout``); its exit status, stdout and stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out or "", err or ""
