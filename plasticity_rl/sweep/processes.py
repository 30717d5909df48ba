"""One `plasticity_rl.main` process, as both runners drive it: started with its output appended to its log
(after a header line), stopped (SIGTERM to its group, then SIGKILL), waited for, and its outcome judged
(exit status and a summary.json in every run's workdir). A process is given as its spec (Process.spec).
"""

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from plasticity_rl import workdir as workdir_lib


def _preexec() -> None:
  """In the child (with start_new_session: signals to the launcher's group do not reach it).

  SIGUSR2 ignored: Slurm's pre-emption warning may reach every process of the
  job; the submitit job handles it and stops the run itself (SIGTERM). And a
  SIGTERM when its parent dies, so that no run is left orphaned (Linux).
  """
  signal.signal(signal.SIGUSR2, signal.SIG_IGN)
  if sys.platform.startswith("linux"):
    try:
      import ctypes  # pylint: disable=g-import-not-at-top
      ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
      pass


def start_process(spec: dict[str, Any], env: dict[str, str], attempt: int, note: str = "") -> subprocess.Popen:
  """Starts a run's command, its stdout and stderr appended to its log (after a header line)."""
  os.makedirs(os.path.dirname(spec["log"]), exist_ok=True)
  with open(spec["log"], "a") as log:
    log.write(f"\n===== {workdir_lib.timestamp()} attempt {attempt} on {socket.gethostname()}{note}\n"
              f"===== {shlex.join(spec['command'])}\n")
    log.flush()
    return subprocess.Popen(spec["command"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=spec["cwd"] if os.path.isdir(spec["cwd"]) else None, env=env,
                            start_new_session=True, preexec_fn=_preexec)


def stop_process(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
  """SIGTERM to the run's process group, SIGKILL after grace_s; returns when it has exited.

  Reaps with os.waitpid, not Popen.wait: this also runs in submitit's signal
  handler, which may interrupt a Popen.wait that holds the Popen's lock.
  """
  if proc.returncode is not None:
    return
  with contextlib.suppress(ProcessLookupError):
    os.killpg(proc.pid, signal.SIGTERM)
  deadline = time.time() + grace_s
  while True:
    try:
      pid, status = os.waitpid(proc.pid, 0 if deadline is None else os.WNOHANG)
    except ChildProcessError:  # Reaped already (by Popen).
      if proc.returncode is None:
        proc.returncode = -signal.SIGTERM
      return
    if pid:
      proc.returncode = os.waitstatus_to_exitcode(status)
      return
    if deadline is not None and time.time() > deadline:
      with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
      deadline = None
    time.sleep(0.1)


def wait_process(proc: subprocess.Popen, poll_s: float = 0.5) -> int:
  """proc's exit status, polling (a signal handler may stop it meanwhile)."""
  while proc.poll() is None:
    time.sleep(poll_s)
  return proc.returncode


def log_tail(path: str, lines: int = 5) -> str:
  try:
    with open(path, errors="replace") as f:
      text = f.read()[-20_000:]
  except OSError:
    return ""
  return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def outcome(spec: dict[str, Any], returncode: int) -> str | None:
  """None when the process finished (exit 0 and summary.json in every run's workdir); else why not."""
  workdirs = spec.get("workdirs", [spec["workdir"]])
  missing = [w for w in workdirs if not os.path.exists(os.path.join(w, "summary.json"))]
  if returncode == 0 and not missing:
    return None
  if returncode == 0:
    where = f" in {', '.join(os.path.basename(w) for w in missing)}" if len(workdirs) > 1 else ""
    return f"exited 0 without writing summary.json{where}"
  if returncode < 0:
    number = -returncode
    return f"killed by signal {signal.Signals(number).name if number in signal.valid_signals() else number}"
  if returncode > 128 and returncode - 128 in signal.valid_signals():
    return f"exit status {returncode} (stopped by {signal.Signals(returncode - 128).name})"
  return f"exit status {returncode}"
