"""Lists a run's checkpoints: step, frames, size, structure, replay, and whether each is readable.

  plasticity-rl-checkpoints --workdir=WORKDIR [--quick]

WORKDIR may also be its checkpoints/ directory, or a multi-seed run's workdir
(config.num_seeds > 1): then every seed_<n>/ is listed. Every checkpoint is read back
in full (the replay too, unless --quick), so "ok" means a resume could use it.
Exit status 1 if any checkpoint is unreadable, 2 on bad input (one line).
"""

import glob
import os
import re

from absl import flags

from plasticity_rl import checkpoint
from plasticity_rl import cli

_WORKDIR = cli.flag(flags.DEFINE_string, "workdir", None, "A run's workdir, its checkpoints/ directory, or a multi-seed "
                               "run's workdir (every seed_<n>/).")
_QUICK = cli.flag(flags.DEFINE_boolean, "quick", False, "Do not read the replay arrays back.")
cli.mark_required(["workdir"])


def _size(path: str) -> int:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _human(n: float) -> str:
  for unit in ("B", "KB", "MB", "GB"):
    if n < 1024 or unit == "GB":
      return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1024
  return ""


def rows(directory: str, quick: bool = False) -> list[dict]:
  """One dict per checkpoint (oldest first); "status" is "ok" or "unreadable: …"."""
  checkpointer = checkpoint.Checkpointer(directory, read_only=True)
  out = []
  for step in checkpointer.steps():
    row = {"step": step, "size": _size(checkpointer.step_path(step))}
    try:
      restored = checkpointer.restore_step(step, with_replay=not quick)
      row.update(checkpoint.summarize(restored.meta), status="ok")
    except Exception as e:  # pylint: disable=broad-except
      row["status"] = f"unreadable: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
      try:
        row.update(checkpoint.summarize(checkpointer.read_meta(step)))
      except Exception:  # pylint: disable=broad-except
        pass
    out.append(row)
  checkpointer.close()
  return out


def main(argv) -> int:
  cli.no_arguments(argv)
  workdir = _WORKDIR.value
  if not os.path.isdir(workdir):
    cli.fail(f"--workdir {workdir}: no such directory")
  checkpoint.quiet_orbax_logs()
  directory = os.path.join(workdir, "checkpoints")
  seeds = glob.glob(os.path.join(workdir, "seed_*", "checkpoints"))
  if os.path.isdir(directory):
    directories = [directory]
  elif seeds:  # A multi-seed run's workdir: each seed's, in seed order.
    directories = sorted(seeds, key=lambda d: int(re.sub(r"\D", "", os.path.basename(os.path.dirname(d))) or 0))
  else:
    directories = [workdir]
  unreadable = False
  for directory in directories:
    unreadable |= _print_table(directory, _QUICK.value)
  return 1 if unreadable else 0


def _print_table(directory: str, quick: bool) -> bool:
  """Prints one checkpoints/ directory's table; True if a checkpoint is unreadable."""
  try:
    table = rows(directory, quick)
  except checkpoint.CheckpointError as e:
    cli.fail(e)
  if not table:
    print(f"no checkpoints in {directory}")
    return False
  print(f"{directory}:")
  print(f"{'step':>12} {'frames':>13} {'updates':>11} {'size':>9} {'branches':>8} {'trainable':>11} "
        f"{'frozen':>11} {'replay':>6}  status")
  fmt = lambda v: "?" if v is None else f"{v:,}"
  for r in table:
    replay = "?" if "replay" not in r else ("yes" if r["replay"] else "no")
    print(f"{r['step']:>12,} {fmt(r.get('frames')):>13} {fmt(r.get('updates')):>11} {_human(r['size']):>9} "
          f"{fmt(r.get('branches')):>8} {fmt(r.get('params_trainable')):>11} {fmt(r.get('params_frozen')):>11} "
          f"{replay:>6}  {r['status']}")
  return any(r["status"] != "ok" for r in table)


def run():
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
