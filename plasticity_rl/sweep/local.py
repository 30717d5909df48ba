"""The local runner: the sweep's processes on this machine, N at a time, one GPU each when there are GPUs.

`detect_gpus` finds the GPUs to pin processes to; `run_local` starts, watches and reports the processes,
and records each one's runs in the manifest.
"""

import datetime
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from typing import Any, Callable, Sequence, TextIO

from plasticity_rl import workdir as workdir_lib
from plasticity_rl.sweep import manifest as manifest_lib
from plasticity_rl.sweep import plan
from plasticity_rl.sweep import processes as processes_lib
from plasticity_rl.sweep import status as status_lib


def detect_gpus() -> list[str]:
  """GPU ids to pin runs to: CUDA_VISIBLE_DEVICES when set, else `nvidia-smi -L`; [] means CPU."""
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if visible is not None:
    ids = [g.strip() for g in visible.split(",") if g.strip()]
    return [] if ids in ([], ["-1"]) else ids
  if shutil.which("nvidia-smi") is None:
    return []
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return re.findall(r"^GPU (\d+):", out, re.MULTILINE)


def run_local(runs: Sequence[plan.Run], manifest: manifest_lib.Manifest, parallel: int = 1, gpus: Sequence[str] = (),
              out: TextIO = sys.stdout, progress_every_s: float = 60.0, poll_s: float = 0.5,
              make_spec: Callable[[plan.Process], dict[str, Any]] = plan.Process.spec, seeds_per_process: int = 1,
              processes: Sequence[plan.Process] | None = None) -> int:
  """Runs every unfinished run, `parallel` processes at a time; returns how many runs failed.

  The processes are `processes`, or group(runs, seeds_per_process). With
  GPUs, each process gets CUDA_VISIBLE_DEVICES=<one id>, the least-used one
  (round-robin); when several processes share a GPU, each gets an equal share
  of its memory (XLA_PYTHON_CLIENT_MEM_FRACTION) unless that is set already. A
  failed process is reported with its log (every run in it failed); the others
  go on. Ctrl-C stops every process (they resume on the next launch).
  """
  processes = plan.group(runs, seeds_per_process) if processes is None else processes
  todo = [p for p in processes if not all(plan.is_done(r) for r in p.runs)]
  skipped = sum(plan.is_done(r) for r in runs)
  to_run = sum(len(p.runs) for p in todo)
  parallel = max(1, parallel)
  gpus = list(gpus)
  base_env = dict(os.environ)
  if gpus and parallel > len(gpus) and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in base_env:
    base_env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / math.ceil(parallel / len(gpus)):.2f}"
  out.write(f"{len(runs)} runs: {skipped} done already (skipped), {to_run} to run{status_lib.process_counts(todo)}, "
            f"{parallel} at a time on {'GPUs ' + ','.join(gpus) if gpus else 'CPU'}\n")
  out.flush()
  progress = status_lib.Progress(to_run, out, progress_every_s)
  running: dict[str, tuple[subprocess.Popen, float, str | None, plan.Process]] = {}
  failures: list[tuple[plan.Process, str]] = []
  queue = list(todo)
  runs_running = lambda: sum(len(p.runs) for _, _, _, p in running.values())
  try:
    while queue or running:
      while queue and len(running) < parallel:
        process = queue.pop(0)
        names = [r.name for r in process.runs]
        gpu = min(gpus, key=lambda g: sum(1 for _, _, x, _ in running.values() if x == g)) if gpus else None
        env = dict(base_env)
        if gpu is not None:
          env["CUDA_VISIBLE_DEVICES"] = gpu
        attempt = max(manifest.get(name).get("attempts", 0) for name in names) + 1
        resume = any(plan.disk_status(r) == "resume" for r in process.runs)
        proc = processes_lib.start_process(make_spec(process), env, attempt, f", GPU {gpu}" if gpu is not None else "")
        running[process.name] = (proc, time.time(), gpu, process)
        manifest.update(*names, status="running", attempts=attempt, started=workdir_lib.timestamp(), finished=None,
                        returncode=None, runner="local", gpu=gpu, pid=proc.pid, host=socket.gethostname())
        progress.line(runs_running(), f"start {process.name}{' (resuming)' if resume else ''}"
                      f"{f' on GPU {gpu}' if gpu is not None else ''}")
      time.sleep(poll_s)
      for name, (proc, t0, _, process) in list(running.items()):
        rc = proc.poll()
        if rc is None:
          continue
        del running[name]
        names = [r.name for r in process.runs]
        problem = processes_lib.outcome(make_spec(process), rc)
        took = datetime.timedelta(seconds=int(time.time() - t0))
        if problem is None:
          progress.done += len(names)
          manifest.update(*names, status="done", returncode=rc, finished=workdir_lib.timestamp(), pid=None)
          progress.line(runs_running(), f"done  {name} ({took})")
        else:
          progress.failed += len(names)
          failures.append((process, problem))
          manifest.update(*names, status="failed", returncode=rc, finished=workdir_lib.timestamp(), pid=None,
                          error=problem)
          tail = processes_lib.log_tail(process.log)
          progress.line(runs_running(), f"FAILED {name} ({problem}, after {took}); log: {process.log}" +
                        ("\n    " + tail.replace("\n", "\n    ") if tail else ""))
      progress.tick(runs_running(), {name: t0 for name, (_, t0, _, _) in running.items()},
                    {name: process.runs[0].workdir for name, (_, _, _, process) in running.items()})
  except KeyboardInterrupt:
    out.write(f"\ninterrupted: stopping {len(running)} process(es); launch again with the same flags to resume\n")
    for proc, _, _, process in running.values():
      processes_lib.stop_process(proc, grace_s=30.0)
      manifest.update(*(r.name for r in process.runs), status="interrupted", returncode=proc.returncode,
                      finished=workdir_lib.timestamp(), pid=None)
    out.flush()
    raise
  out.write(f"finished: {progress.done} done, {progress.failed} failed, {skipped} skipped (done before)"
            f" in {datetime.timedelta(seconds=int(time.time() - progress.start))}\n")
  for process, problem in failures:
    out.write(f"  FAILED {process.name}: {problem}; log: {process.log}\n")
  out.flush()
  return progress.failed
