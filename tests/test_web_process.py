"""The console process behind a browser tab asks for a parent-death signal: when the web face
dies outright, even a console that is not reading its stdin (whose EOF would otherwise end
it) goes too. Real processes: a parent that is SIGKILLed, and its child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from support import HANG_GUARD, running, wait_until

from console.web.app_process import PARENT_ENV

SLEEPER = (
    "from console.web.app_process import die_with_parent\n"
    "die_with_parent()\n"
    "import time\n"
    "print('ready', flush=True)\n"
    "time.sleep(600)\n"
)
PARENT = (
    "import os, subprocess, sys\n"
    f"env = {{**os.environ, {PARENT_ENV!r}: str(os.getpid())}}\n"
    "child = subprocess.Popen([sys.executable, '-c', sys.argv[1]], env=env,\n"
    "                         stdin=subprocess.DEVNULL)\n"
    "print(child.pid, flush=True)\n"
    "child.wait()\n"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_console_process_dies_with_its_parent() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, SLEEPER], stdout=subprocess.PIPE,
                              text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline().strip() == "ready"  # the child asked for the signal
        assert running(child)
        parent.kill()
        parent.wait(HANG_GUARD)
        wait_until(lambda: not running(child), "the child to end with its parent")
    finally:
        if running(child):
            os.kill(child, signal.SIGKILL)


def test_console_process_whose_parent_is_already_gone_stops() -> None:
    """Started after its parent died (the signal would never come): it stops at once."""
    env = {**os.environ, PARENT_ENV: "1"}  # not our pid: as if re-parented already
    proc = subprocess.run([sys.executable, "-c", SLEEPER], env=env, capture_output=True,
                          text=True, timeout=HANG_GUARD)
    assert proc.returncode == 0 and "ready" not in proc.stdout
