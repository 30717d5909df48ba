"""Diagnoses plasticity loss: branches one saved agent into "continue" and "inject now" (Nikishin et al. 2023).

  plasticity-rl-diagnose --source=runs/pong --workdir=runs/pong_diagnosis \
      --extra_frames=10_000_000 [--window_frames=N] [--config=configs/dqn.py:cpu] [--config.x=y …] [--parallel]

--source is a workdir (its newest checkpoint) or one workdir/checkpoints/<frames>
directory. Both branches are runs of `python -m plasticity_rl.main` reincarnated
from that checkpoint with load=all (params, optimizer, replay, counters), for
--extra_frames more frames: WORKDIR/continue as it is, WORKDIR/inject with a
plasticity injection at the first loop step after the checkpoint. The config is
the source's own (its config.json, else the one saved in the checkpoint) unless
--config names one; --config.x=y overrides go to both branches. They run one
after the other (--parallel: both at once), logs in WORKDIR/logs/; a re-run skips
finished branches. Then the report (plasticity_rl/analysis/diagnosis.py): eval
return, training return and loss before the branch point (the source's logs) and
after (each branch's), a verdict that needs the 95 % CI of inject − continue (over the
evaluations after the branch point) to exclude 0, else "inconclusive", as a Markdown table on stdout,
WORKDIR/diagnosis.md, WORKDIR/diagnosis.json and WORKDIR/diagnosis.png.
Exit status 2 on bad input (one line), 1 if a branch failed.
"""

import json
import os
import re
import shlex
import sys

from absl import flags

from plasticity_rl import cli
from plasticity_rl import sweep
from plasticity_rl.analysis import diagnosis

_SOURCE = cli.flag(flags.DEFINE_string, "source", None, "A workdir (its newest checkpoint) or one checkpoints/<frames> dir.")
_WORKDIR = cli.flag(flags.DEFINE_string, "workdir", None, "The diagnosis directory (branches continue/ and inject/, reports).")
_EXTRA = cli.flag(flags.DEFINE_integer, "extra_frames", None, "Frames each branch trains after the checkpoint.")
_WINDOW = cli.flag(flags.DEFINE_integer, "window_frames", None, "Frames before the branch point averaged as 'before' "
                               "(default: --extra_frames).")
_CONFIG = cli.flag(flags.DEFINE_string, "config", None, "A configs/*.py[:arg] for both branches (default: the source's own).")
_PARALLEL = cli.flag(flags.DEFINE_boolean, "parallel", False, "Run both branches at once (one GPU each when there are GPUs).")
cli.mark_required(["source", "workdir", "extra_frames"])

SAVED_CONFIG = os.path.join(cli.CONFIGS_DIR, "saved.py")
# Fields the diagnosis sets itself; an override of one (or of a field under it) is an error.
_OWN_FIELDS = ("total_frames", "reincarnate", "injection.frames", "injection.hidden", "injection.trigger")
_OVERRIDE = re.compile(r"^--(?:no)?config\.")
_STEP_MARK = "_CHECKPOINT_METADATA"  # In every complete orbax step directory.
_MAX_ABS_DQ = 1e-3  # An injection leaves Q unchanged up to float rounding; more means a broken one.


class DiagnosisError(ValueError):
  """Bad input; the message is one line."""


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
  """argv -> (the rest, the --config.x=y overrides, which absl does not know)."""
  return [a for a in argv if not _OVERRIDE.match(a)], [a for a in argv if _OVERRIDE.match(a)]


def _override_field(arg: str) -> str:
  return re.sub(r"^--(?:no)?config\.", "", arg).split("=", 1)[0]


def find_checkpoint(source: str) -> tuple[str, str, dict]:
  """source -> (its checkpoint step dir, the source's workdir, the checkpoint's meta or {}).

  Reads the file system only, as checkpoint.open_source resolves paths: orbax would
  start JAX's backend, and forking the branches after that is unsafe. A step's
  name is its frame count; the branches' reincarnation reads and checks the rest.
  """
  path = os.path.abspath(source)
  if not os.path.exists(path):
    raise DiagnosisError(f"--source {source} does not exist")
  step = None
  if os.path.isdir(os.path.join(path, "checkpoints")):
    directory = os.path.join(path, "checkpoints")
  elif os.path.basename(path).isdigit() and os.path.isfile(os.path.join(path, _STEP_MARK)):
    directory, step = os.path.dirname(path), int(os.path.basename(path))
  elif os.path.isdir(path) and any(n.isdigit() for n in os.listdir(path)):
    directory = path
  else:
    raise DiagnosisError(f"--source {source}: no checkpoints (not a workdir with checkpoints/, a checkpoints/ "
                         "directory or a checkpoints/<frames> step directory)")
  if step is None:
    steps = [int(n) for n in os.listdir(directory) if n.isdigit() and
             os.path.isfile(os.path.join(directory, n, _STEP_MARK))]
    if not steps:
      raise DiagnosisError(f"--source {source}: no checkpoints in {directory}")
    step = max(steps)
  step_dir = os.path.join(directory, str(step))
  meta = {}
  if os.path.isfile(os.path.join(step_dir, "meta", "metadata")):
    try:
      with open(os.path.join(step_dir, "meta", "metadata")) as f:
        meta = json.load(f)
    except (OSError, ValueError):
      meta = {}
  return step_dir, os.path.dirname(directory), meta


def base_config_spec(source_workdir: str, meta: dict, out: str, config: str | None) -> str:
  """--config, else configs/saved.py on the source's config.json, else on the checkpoint's saved config."""
  if config:
    try:
      return sweep.config_spec(config)
    except sweep.SweepError as e:
      raise DiagnosisError(str(e)) from None
  path = os.path.join(source_workdir, "config.json")
  if not os.path.exists(path):
    if not meta.get("config"):
      raise DiagnosisError(f"the source has no config.json ({path}) and its checkpoint no saved config: pass --config")
    path = os.path.join(out, "source_config.json")
    os.makedirs(out, exist_ok=True)
    with open(path, "w") as f:
      json.dump(meta["config"], f, indent=1)
  return f"{SAVED_CONFIG}:{path}"


def branch_args(base_args: list[str], base, checkpoint_dir: str, branch_frames: int,
                extra_frames: int) -> tuple[dict[str, list[str]], int, int]:
  """({branch: config args}, end frames, injection frames) for both branches.

  The branches run to branch_frames + extra_frames (rounded up to whole loop
  steps); "inject" injects at the first loop step after the checkpoint, where the
  schedule (a reincarnated run drops, with a warning, frames ≤ the checkpoint's) fires it.
  """
  step_frames = 4 * base.env.num_envs
  end = branch_frames + -(-extra_frames // step_frames) * step_frames
  inject_at = branch_frames + step_frames
  common = [*base_args, f"--config.total_frames={end}", f"--config.reincarnate.path={checkpoint_dir}",
            "--config.reincarnate.load=all", "--config.injection.hidden=()"]
  if "trigger" in base.injection:  # A metric-triggered injection would fire in "continue" too.
    common.append("--config.injection.trigger.metric=")
  frames = {"continue": (), "inject": (inject_at,)}
  return {name: [*common, f"--config.injection.frames={sweep.format_value(frames[name])}",
                 f"--config.variant={base.variant}+{name}"] for name in diagnosis.BRANCHES}, end, inject_at


def plan(source: str, out: str, extra_frames: int, window_frames: int | None, config: str | None,
         overrides: list[str]) -> dict:
  """Checks the input and builds both branches' runs; DiagnosisError (one line) on bad input."""
  if extra_frames is None or extra_frames <= 0:
    raise DiagnosisError(f"--extra_frames must be > 0, got {extra_frames}")
  if window_frames is not None and window_frames <= 0:
    raise DiagnosisError(f"--window_frames must be > 0, got {window_frames}")
  own = [a for a in overrides if any(_override_field(a) == f or _override_field(a).startswith(f + ".")
                                     for f in _OWN_FIELDS)]
  if own:
    raise DiagnosisError(f"{own[0]}: the diagnosis sets {', '.join(_OWN_FIELDS)} itself")
  out = os.path.abspath(out)
  checkpoint_dir, source_workdir, meta = find_checkpoint(source)
  if "replay" in meta and meta["replay"] is None:
    raise DiagnosisError(f"{checkpoint_dir} holds no replay (checkpoint.save_replay=False): the branches load "
                         "everything (load=all), replay included")
  branch_frames = int(meta.get("loop", {}).get("frames", os.path.basename(checkpoint_dir)))
  base_args = [f"--config={base_config_spec(source_workdir, meta, out, config)}", *overrides]
  try:
    base = sweep.parse_config(base_args)
  except sweep.SweepError as e:
    raise DiagnosisError(str(e).splitlines()[0]) from None
  args, end, inject_at = branch_args(base_args, base, checkpoint_dir, branch_frames, extra_frames)
  runs = [sweep.Run(game=base.game, variant=f"{base.variant}+{name}", seed=base.seed, name=name,
                    workdir=os.path.join(out, name), log=os.path.join(out, sweep.LOGS, f"{name}.log"),
                    config_args=tuple(args[name]), variant_overrides=(), cwd=os.getcwd()) for name in diagnosis.BRANCHES]
  try:
    conflicts = sweep.check(runs)
  except sweep.SweepError as e:
    raise DiagnosisError(str(e).splitlines()[0]) from None
  if conflicts:
    name, problem = next(iter(conflicts.items()))
    raise DiagnosisError(f"branch {name}: {problem}; use a new --workdir, or the same source and flags to resume")
  return {"runs": runs, "out": out, "base_spec": base_args[0], "overrides": list(overrides),
          "checkpoint": checkpoint_dir, "source_workdir": source_workdir, "branch_frames": branch_frames,
          "end_frames": end,
          "extra_frames": end - branch_frames, "window_frames": window_frames or extra_frames,
          "inject_at": inject_at, "config": base, "checksum": meta.get("checksums", {}).get("state")}


def run_branches(p: dict, parallel: bool) -> int:
  """Runs the unfinished branches (sweep.run_local, progress on stderr); returns how many failed."""
  with sweep.root_lock(p["out"]):
    manifest = sweep.Manifest.open(p["out"], p["base_spec"], [])
    manifest.add_launch(sys.argv, "local", p["runs"])
    manifest.save()
    return sweep.run_local(p["runs"], manifest, parallel=2 if parallel else 1,
                           gpus=sweep.detect_gpus() if parallel else [], out=sys.stderr, progress_every_s=60.0)


def report(p: dict) -> tuple[dict, diagnosis.Logs, dict[str, diagnosis.Logs]]:
  """(diagnosis.json's content, the source's logs, the branches' logs)."""
  source = diagnosis.read_logs(p["source_workdir"])
  branches = {run.name: diagnosis.read_logs(run.workdir) for run in p["runs"]}
  stats = diagnosis.compare(source, branches, p["branch_frames"], p["window_frames"], p["end_frames"])
  diff = diagnosis.difference(branches, p["branch_frames"], p["end_frames"])
  line, loss_shown = diagnosis.verdict(stats, diff)
  injections = [e for e in branches["inject"].events if e.get("name") == "injection"]
  first = injections[0] if injections else {}
  injected = (len(injections) == 1 and first["frames"] == p["inject_at"] and
              max(first["max_abs_dq"], first["max_abs_dq_target"]) <= _MAX_ABS_DQ)
  c = p["config"]
  out = {
      "source": {"workdir": p["source_workdir"], "checkpoint": p["checkpoint"], "game": c.game,
                 "variant": c.variant, "seed": c.seed, "params_checksum": p["checksum"]},
      "config": p["base_spec"].split("=", 1)[1], "overrides": p["overrides"],
      "branch_frames": p["branch_frames"], "end_frames": p["end_frames"],
      "extra_frames": p["extra_frames"], "window_frames": p["window_frames"],
      "injection": {"expected_frames": p["inject_at"], "frames": first.get("frames"), "count": len(injections),
                    "max_abs_dq": first.get("max_abs_dq"), "max_abs_dq_target": first.get("max_abs_dq_target"),
                    "ok": injected},
      "branches": {run.name: {"workdir": run.workdir, "log": run.log, "command": shlex.join(run.command),
                              "reincarnated_from": (branches[run.name].run or {}).get("reincarnated_from"),
                              "reincarnated_frames": (branches[run.name].run or {}).get("reincarnated_frames"),
                              **stats[run.name]} for run in p["runs"]},
      "difference": diff, "verdict": line, "plasticity_loss": loss_shown,
  }
  return out, source, branches


def main(argv):
  cli.no_arguments(argv)
  try:
    p = plan(_SOURCE.value, _WORKDIR.value, _EXTRA.value, _WINDOW.value, _CONFIG.value, _OVERRIDES)
  except DiagnosisError as e:
    cli.fail(e)
  try:
    failed = run_branches(p, _PARALLEL.value)
  except sweep.SweepError as e:  # Another launcher on this --workdir, or its sweep.json from other flags.
    cli.fail(e)
  if failed:
    cli.fail(f"{failed} branch(es) failed; logs in {os.path.join(p['out'], sweep.LOGS)}", status=1)
  result, source, branches = report(p)
  with open(os.path.join(p["out"], "diagnosis.json"), "w") as f:
    json.dump(result, f, indent=1)
  text = diagnosis.markdown(result)
  with open(os.path.join(p["out"], "diagnosis.md"), "w") as f:
    f.write(text)
  diagnosis.plot(source, branches, result, os.path.join(p["out"], "diagnosis.png"))
  if not result["injection"]["ok"]:
    print(f"warning: {diagnosis.injection_line(result)}: expected one injection at "
          f"{p['inject_at']:,} frames with max |ΔQ| ≤ {_MAX_ABS_DQ}", file=sys.stderr)
  print(text.replace("![diagnosis](diagnosis.png)", f"plot: {os.path.join(p['out'], 'diagnosis.png')}"))


_OVERRIDES: list[str] = []


def _parse_flags(argv):
  """cli.parse_flags for the tool's own flags; --config.x=y set aside for the branches."""
  rest, overrides = split_overrides(argv)
  _OVERRIDES[:] = overrides
  return cli.parse_flags(rest, __name__)


def run():
  cli.run(main, __name__, parse=_parse_flags)


if __name__ == "__main__":
  run()
