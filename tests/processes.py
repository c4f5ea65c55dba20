"""Running a command in a child process and measuring its peak memory truthfully.

Linux starts a forked child's peak RSS at its parent's, so a child forked from the test
process (hundreds of MB of imported libraries and data) would report that as its own peak.
A small launcher process, started from a clean interpreter, forks the measured children.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_LAUNCHER = """
import json, os, subprocess, sys, tempfile, time
for line in sys.stdin:
    job = json.loads(line)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(job["argv"], env=job["env"], stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        print(json.dumps({"seconds": seconds, "code": os.waitstatus_to_exitcode(status),
                          "stdout": out.read().decode(errors="replace"), "stderr": err.read().decode(errors="replace"),
                          "peak_kb": usage.ru_maxrss}), flush=True)
"""


class Launcher:
    """Runs commands as children of a small process: exit code, output, seconds, peak memory."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-I", "-c", _LAUNCHER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def run(self, argv: list, env: dict) -> dict:
        self.process.stdin.write(json.dumps({"argv": [str(word) for word in argv], "env": env}) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def reelops(workspace: Path, *args, check=True, timeout=300) -> subprocess.CompletedProcess:
    """One ``reelops`` command in its own process, as a user runs it, in ``workspace``."""
    done = subprocess.run([sys.executable, "-m", "reelops.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "REELOPS_WORKSPACE": str(workspace)}, cwd=workspace)
    if check:
        assert done.returncode == 0, done.stderr + done.stdout
    return done
