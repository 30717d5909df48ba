"""What the launcher shows: each run's status (`statuses`), the plan (`print_plan`), and while runs go, one line
per event and a status line every so often (`Progress`), counting runs (seeds), not processes.
"""

import datetime
import time
from typing import Sequence, TextIO

from plasticity_rl.sweep import manifest as manifest_lib
from plasticity_rl.sweep import plan
from plasticity_rl.sweep import workdir_state


def statuses(runs: Sequence[plan.Run], manifest: manifest_lib.Manifest, conflicts: dict[str, str],
             active: dict[str, str]) -> dict[str, str]:
  """{name: status}: done, conflict, queued/running (a Slurm job), failed (last attempt), resume, pending."""
  out = {}
  for run in runs:
    status = plan.disk_status(run)
    if status != "done":
      if run.name in conflicts:
        status = "conflict"
      elif run.name in active:
        status = f"slurm:{active[run.name].split()[0].lower()}"
      elif manifest.get(run.name).get("status") in ("failed", "interrupted"):
        status = manifest.get(run.name)["status"]
    out[run.name] = status
  return out


def print_plan(runs: Sequence[plan.Run], status: dict[str, str], conflicts: dict[str, str], out: TextIO,
               processes: Sequence[plan.Process] = ()) -> None:
  """The run list with statuses (and the multi-seed process of each run to go), then the counts."""
  width = max(len(s) for s in status.values()) if status else 7
  process_of = {r.name: p for p in processes if p.multi for r in p.runs}
  for run in runs:
    line = f"  {status[run.name]:<{width}}  {run.name}"
    if run.name in process_of:
      line += f"  [process {process_of[run.name].name}]"
    if run.name in conflicts:
      line += f"  ({conflicts[run.name]})"
    out.write(line + "\n")
  counts = {}
  for s in status.values():
    counts[s] = counts.get(s, 0) + 1
  out.write(f"{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + "\n")
  if process_of:
    out.write(f"{sum(len(p.runs) for p in processes)} runs to go{process_counts(processes)}\n")
  out.flush()


def process_counts(processes: Sequence[plan.Process]) -> str:
  """' in 3 processes (up to 2 seeds each)' when some process runs several seeds; else ''."""
  if not any(p.multi for p in processes):
    return ""
  n = len(processes)
  return f" in {n} process{'es' if n != 1 else ''} (up to {max(len(p.runs) for p in processes)} seeds each)"


class Progress:
  """Prints one line per event and a status line every `every_s` seconds; counts runs (seeds), not processes."""

  def __init__(self, total: int, out: TextIO, every_s: float):
    self.total, self.out, self.every_s = total, out, every_s
    self.done = self.failed = 0
    self.start = self.last = time.time()

  def line(self, running: int, message: str) -> None:
    waiting = self.total - self.done - self.failed - running
    elapsed = datetime.timedelta(seconds=int(time.time() - self.start))
    self.out.write(f"[{elapsed} | {self.done}/{self.total} done, {running} running, {self.failed} failed, "
                   f"{waiting} waiting] {message}\n")
    self.out.flush()
    self.last = time.time()

  def tick(self, running: int, started: dict[str, float], workdirs: dict[str, str] | None = None) -> None:
    """`running` runs in the processes `started` ({name: start time}); `workdirs` ({name: a workdir of its
    runs}): where each one's frames and ETA are read (`run_progress`)."""
    if time.time() - self.last >= self.every_s:
      workdirs = workdirs or {}
      ages = []
      for name, t0 in list(started.items())[:4]:
        where = workdir_state.run_progress(workdirs[name]) if name in workdirs else None
        ages.append(f"{name} {datetime.timedelta(seconds=int(time.time() - t0))}" + (f" ({where})" if where else ""))
      self.line(running, f"running: {', '.join(ages)}" + (" …" if len(started) > 4 else ""))
