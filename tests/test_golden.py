"""Golden outputs: smoke runs whose every logged number must stay what it was (the safety net of refactors).

Each case below is a short real run (real envpool, in this process) of a preset or of interventions the loop
applies; its metrics.jsonl rows (train, plasticity, event, episode, eval, run, checkpoint: every field but
wall-clock timings) and eval.csv returns are compared with tests/golden/<case>.json, written by the code at
the commit named in that file.

Exact equality holds on the CPU the file was written on (its `cpu` entry; XLA compiles for the host's
instruction set, so another CPU may round differently and training then diverges). On another CPU the test
checks what does not depend on rounding: the same rows (training episodes aside), kinds, frames, fields and
events in the same order.

To rewrite the files after an intended change of behaviour (say so in the commit):
  PLASTICITY_RL_WRITE_GOLDEN=1 .venv/bin/python -m pytest -q tests/test_golden.py
"""

import json
import os
import pathlib
import platform
import subprocess

import pytest

from plasticity_rl import config as config_lib
from plasticity_rl import recorder as recorder_lib
from plasticity_rl import testing
from plasticity_rl import workdir as workdir_lib

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"
REPO = pathlib.Path(__file__).resolve().parents[1]
WRITE = os.environ.get("PLASTICITY_RL_WRITE_GOLDEN") == "1"
# Wall-clock fields: they change from run to run.
TIMINGS = {"fps", "updates_per_s", "blocking_seconds", "seconds", "wall_seconds"}
# XLA's count of an update's FLOPs (compute_cost.py): the compiler's cost model, which a JAX release may change,
# not the run's behaviour (tests/test_compute_cost.py checks the count; the golden rows predate it).
ACCOUNTING = {"update_flops", "train_flops"}
SKIPPED_KINDS = {"provenance"}  # Commit, versions, host: the run's identity, not its behaviour.


def _dqn_smoke():
  return testing.configs_module("dqn").get_config("smoke")


def _baseline():
  return _dqn_smoke()


def _surgery():
  """Every scheduled surgery on the state, at different frames: injection (optimizer slot re-initialized),
  a head reset, shrink-and-perturb, ReDo, with L2-init, DrQ's random shift and layer norm on."""
  c = _dqn_smoke()
  c.injection.frames = (2_000,)
  c.injection.reset_optimizer = True
  c.reset.frames = (3_008,)
  c.reset.target = "head"
  c.shrink_perturb.update(frames=(2_496,), alpha=0.8, sigma=0.2)
  c.redo.update(period_frames=1_008, tau=0.1)
  c.regularizer.update(kind="l2_init", coef=1e-3)
  c.learner.augment = "random_shift"
  c.network.layer_norm = True
  return c


def _triggered():
  """A metric trigger that always holds (two injections) and the adaptive replay ratio (one switch)."""
  c = _dqn_smoke()
  c.injection.trigger.update(metric="dormant_0", threshold=-1.0, window=2, min_gap_frames=0, max_count=2)
  c.learner.adaptive_replay_ratio.update(enabled=True, low=0.0625, high=0.25, window=2, tolerance=1.0)
  return c


def _expansion():
  return testing.configs_module("expansion").get_config("smoke")


def _drq_eps():
  return testing.configs_module("drq_eps").get_config("smoke")


def _two_seeds():
  """Dopamine's DQN preset (Adam, MSE) with two seeds in one process: both seeds' rows."""
  c = testing.configs_module("dopamine_dqn").get_config("smoke")
  c.num_seeds = 2
  return c


CASES = {"baseline": _baseline, "surgery": _surgery, "triggered": _triggered, "expansion": _expansion,
         "drq_eps": _drq_eps, "two_seeds": _two_seeds}


def _cpu() -> str:
  """The host CPU's model and instruction-set flags: where exact equality is expected."""
  try:
    info = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
  except OSError:
    return platform.processor() or platform.machine()
  fields = dict(line.split(":", 1) for line in info if ":" in line)
  fields = {k.strip(): v.strip() for k, v in fields.items()}
  return f"{fields.get('model name', '?')} | {fields.get('flags', '?')}"


def _record(workdir: str) -> dict:
  rows = [{k: v for k, v in r.items() if k not in TIMINGS | ACCOUNTING}
          for r in recorder_lib.read_metrics(workdir) if r["kind"] not in SKIPPED_KINDS]
  evals = [[int(r["frames"]), float(r["episode_return"])] for r in recorder_lib.read_eval(workdir)]
  return {"metrics": rows, "eval": evals}


def _run(config, workdir: str) -> dict:
  from plasticity_rl import multi_seed  # pylint: disable=g-import-not-at-top
  from plasticity_rl import train  # pylint: disable=g-import-not-at-top
  config_lib.validate(config)
  workdir_lib.prepare_workdir(workdir, config)
  if config.num_seeds > 1:
    multi_seed.train_seeds(config, workdir)
    return {f"seed_{s}": _record(multi_seed.seed_workdir(workdir, s)) for s in multi_seed.seeds_of(config)}
  train.train(config, workdir)
  return {"seed_0": _record(workdir)}


def _commit() -> str:
  try:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def _shape(record: dict) -> dict:
  """What a run logs regardless of rounding: per seed, each row's kind, frames and field names; event names.
  Training episodes are left out: where they end depends on the actions taken."""
  return {seed: [(r["kind"], r["frames"], sorted(r), r.get("name")) for r in runs["metrics"]
                 if r["kind"] != "episode"] for seed, runs in record.items()}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case, tmp_path):
  record = json.loads(json.dumps(_run(CASES[case](), str(tmp_path / case))))  # Tuples as JSON has them.
  path = GOLDEN / f"{case}.json"
  if WRITE:
    GOLDEN.mkdir(exist_ok=True)
    path.write_text(json.dumps({"commit": _commit(), "cpu": _cpu(), "runs": record}, indent=1) + "\n")
    pytest.skip(f"wrote {path}")
  assert path.exists(), f"{path} is missing: write it with PLASTICITY_RL_WRITE_GOLDEN=1"
  golden = json.loads(path.read_text())
  if golden["cpu"] == _cpu():
    for seed in golden["runs"]:
      for want, got in zip(golden["runs"][seed]["metrics"], record[seed]["metrics"], strict=True):
        assert got == want, f"{case} {seed}: first differing row at {want['frames']} frames ({want['kind']})"
      assert record[seed]["eval"] == golden["runs"][seed]["eval"], f"{case} {seed}: eval.csv returns differ"
  else:
    assert _shape(record) == _shape(golden["runs"])
