"""The Slurm runner, through submitit: one job per process (a Slurm job array, or submitit's local and debug
executors on this machine), waiting for the jobs, and which recorded jobs Slurm still queues or runs.

A job runs `SubmittedRun`: the process's command as a subprocess, its output to the process's log. On
pre-emption or timeout it stops the process and requeues the same command, which resumes from the
workdirs' last checkpoint; a requeued job whose runs have finished returns at once.
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any, Iterable, Sequence, TextIO

import submitit

from plasticity_rl import workdir as workdir_lib
from plasticity_rl.sweep import manifest as manifest_lib
from plasticity_rl.sweep import plan
from plasticity_rl.sweep import processes as processes_lib
from plasticity_rl.sweep import status as status_lib

# Slurm states in which a submitted run is still queued or running (not to be submitted again).
ACTIVE_JOB_STATES = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED",
                     "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT")


def job_states(manifest: manifest_lib.Manifest, runs: Sequence[plan.Run]) -> dict[str, str]:
  """{name: Slurm state} for unfinished runs whose recorded Slurm job is still queued or running.

  Asks `squeue` (not sacct: it needs accounting). Without squeue here, {}.
  """
  recorded = {}
  for run in runs:
    entry = manifest.get(run.name)
    if entry.get("cluster") == "slurm" and entry.get("job_id") and not plan.is_done(run):
      recorded[run.name] = entry["job_id"]
  if not recorded or shutil.which("squeue") is None:
    return {}
  base_ids = sorted({job_id.split("_")[0] for job_id in recorded.values()})
  try:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(base_ids)], capture_output=True,
                         text=True, timeout=60).stdout
  except (OSError, subprocess.SubprocessError):
    return {}
  queued = dict(line.strip().split("|", 1) for line in out.splitlines() if "|" in line)
  return {name: queued[job_id] for name, job_id in recorded.items()
          if job_id in queued and queued[job_id] in ACTIVE_JOB_STATES}


class RunFailed(RuntimeError):
  pass


class SubmittedRun(submitit.helpers.Checkpointable):
  """The callable a submitit job runs: one process's command, as a subprocess, its output to the process's log.

  Checkpointable: on pre-emption or timeout, submitit calls `checkpoint`, which
  stops the process (SIGTERM, then SIGKILL after `grace_s`) and requeues the
  same command — it resumes from the workdirs' last checkpoint. A requeued job
  whose runs have finished (summary.json in each) returns at once.
  """

  def __init__(self, grace_s: float = 150.0):
    self.grace_s = grace_s
    self._proc = None

  def __call__(self, spec: dict[str, Any]) -> dict[str, Any]:
    workdirs = spec.get("workdirs", [spec["workdir"]])
    if not all(os.path.exists(os.path.join(w, "summary.json")) for w in workdirs):
      attempt = 1
      with contextlib.suppress(OSError), open(spec["log"], errors="replace") as f:
        attempt += len(re.findall(r"^===== \S+ attempt \d+ on ", f.read(), re.MULTILINE))
      job = submitit.JobEnvironment().job_id if submitit.JobEnvironment().activated() else None
      self._proc = processes_lib.start_process(spec, dict(os.environ), attempt, f", job {job}" if job else "")
      try:
        returncode = processes_lib.wait_process(self._proc)
      finally:
        # SystemExit from a requeue, KeyboardInterrupt from a cancel.
        processes_lib.stop_process(self._proc, self.grace_s)
      problem = processes_lib.outcome(spec, returncode)
      if problem is not None:
        tail = processes_lib.log_tail(spec["log"])
        raise RunFailed(f"{spec['name']}: {problem}; log: {spec['log']}" + (f"\n{tail}" if tail else ""))
    results = []
    for workdir in workdirs:
      with open(os.path.join(workdir, "summary.json")) as f:
        s = json.load(f)
      results.append({"name": spec["name"] if len(workdirs) == 1 else os.path.basename(workdir), "workdir": workdir,
                      **{k: s.get(k) for k in ("frames", "final_eval_return", "best_eval_return", "wall_seconds")}})
    return results[0] if len(results) == 1 else {"name": spec["name"], "workdir": spec["workdir"], "runs": results}

  def checkpoint(self, spec: dict[str, Any]):  # pylint: disable=arguments-differ
    if self._proc is not None and self._proc.poll() is None:
      processes_lib.stop_process(self._proc, self.grace_s)
      with contextlib.suppress(OSError), open(spec["log"], "a") as f:
        f.write(f"===== {workdir_lib.timestamp()} pre-empted or timed out: stopped, requeued on the same workdir\n")
    return submitit.helpers.DelayedSubmission(SubmittedRun(self.grace_s), spec)

  def __getstate__(self):
    return {"grace_s": self.grace_s, "_proc": None}


def make_executor(root: str, cluster: str, parameters: dict[str, Any]):
  folder = os.path.join(root, ".submitit", "%j")
  executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
  executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
  return executor


def submit(runs: Sequence[plan.Run], manifest: manifest_lib.Manifest, cluster: str = "slurm",
           parameters: dict[str, Any] | None = None, out: TextIO = sys.stdout, grace_s: float = 150.0,
           skip: Iterable[str] = (), seeds_per_process: int = 1,
           processes: Sequence[plan.Process] | None = None) -> list[tuple[plan.Process, Any]]:
  """Submits every unfinished run, one job per process (one job array on Slurm); returns [(process, submitit job)].

  `parameters` go to submitit's AutoExecutor.update_parameters (timeout_min,
  gpus_per_node, slurm_partition, slurm_array_parallelism, …: per job, so per
  process); `cluster` is "slurm", or "local"/"debug" for submitit's executors
  on this machine. `skip`: runs whose job is still queued or running. The
  processes are `processes`, or group(the other runs, seeds_per_process).
  """
  skip = set(skip)
  if processes is None:
    processes = plan.group([r for r in runs if r.name not in skip], seeds_per_process)
  todo = [p for p in processes if not all(plan.is_done(r) for r in p.runs) and not any(r.name in skip for r in p.runs)]
  out.write(f"{len(runs)} runs: {sum(plan.is_done(r) for r in runs)} done already (skipped), "
            + (f"{len(skip)} still queued or running (skipped), " if skip else "")
            + f"{sum(len(p.runs) for p in todo)} to submit{status_lib.process_counts(todo)} ({cluster})\n")
  out.flush()
  if not todo:
    return []
  executor = make_executor(manifest.root, cluster, parameters or {})
  jobs = executor.map_array(SubmittedRun(grace_s), [p.spec() for p in todo])
  folder = str(executor.folder)
  for process, job in zip(todo, jobs):
    names = [r.name for r in process.runs]
    attempts = max(manifest.get(name).get("attempts", 0) for name in names) + 1
    manifest.update(*names, status="submitted", runner="submitit", cluster=cluster, job_id=str(job.job_id),
                    submitit_folder=folder, submitted=workdir_lib.timestamp(), attempts=attempts, returncode=None,
                    finished=None, error=None)
    out.write(f"  job {job.job_id}  {process.name}\n")
  logs = "seed_<n>.log" + (" or seeds_<a>-<b>.log" if any(p.multi for p in todo) else "")
  out.write(f"submitted {len(jobs)} job(s); submitit's logs: {os.path.dirname(folder)}/<job id>/, "
            f"each process's output: {os.path.join(manifest.root, plan.LOGS)}/<game>/<variant>/{logs}\n")
  out.flush()
  return list(zip(todo, jobs))


def wait_jobs(submitted: Sequence[tuple[plan.Process, Any]], manifest: manifest_lib.Manifest, out: TextIO = sys.stdout,
              progress_every_s: float = 60.0, poll_s: float = 1.0) -> int:
  """Waits for submitted jobs (one per process), reporting each; returns how many runs failed."""
  progress = status_lib.Progress(sum(len(p.runs) for p, _ in submitted), out, progress_every_s)
  failures = []
  pending = {process.name: (process, job) for process, job in submitted}
  pending_runs = lambda: sum(len(p.runs) for p, _ in pending.values())
  while pending:
    time.sleep(poll_s)
    for name, (process, job) in list(pending.items()):
      if not job.done():
        continue
      del pending[name]
      names = [r.name for r in process.runs]
      error = job.exception()
      if error is None and all(plan.is_done(r) for r in process.runs):
        progress.done += len(names)
        manifest.update(*names, status="done", finished=workdir_lib.timestamp(), returncode=0)
        progress.line(pending_runs(), f"done  {name} (job {job.job_id})")
      else:
        progress.failed += len(names)
        lines = str(error or "no summary.json").strip().splitlines()
        failures.append((process, job))
        manifest.update(*names, status="failed", finished=workdir_lib.timestamp(), error=lines[-1] if lines else "")
        progress.line(pending_runs(), f"FAILED {name} (job {job.job_id}); log: {process.log}; "
                      f"submitit log: {job.paths.stderr}")
    progress.tick(pending_runs(), {n: progress.start for n in pending},
                  {n: process.runs[0].workdir for n, (process, _) in pending.items()})
  out.write(f"finished: {progress.done} done, {progress.failed} failed\n")
  for process, job in failures:
    out.write(f"  FAILED {process.name}: log {process.log}; submitit log {job.paths.stderr}\n")
  out.flush()
  return progress.failed
