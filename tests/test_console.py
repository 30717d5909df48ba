"""What a person sees: --help, the field listing, the start of a run's console, progress lines and ETAs, the
sweep's status line (plasticity_rl.main, fields, progress, sweep)."""

import json
import logging
import os
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import pytest

from plasticity_rl import config as config_lib
from plasticity_rl import fields
from plasticity_rl import main
from plasticity_rl import progress
from plasticity_rl import sweep
from plasticity_rl import testing

REPO = pathlib.Path(__file__).resolve().parents[1]


def _cli(*args: str, env=None, head=(sys.executable, "-m", "plasticity_rl.main"), timeout=300):
  return subprocess.run([*head, *args], cwd=REPO, env=env or {**os.environ, "JAX_PLATFORMS": "cpu"},
                        capture_output=True, text=True, timeout=timeout, check=False)


# -- --help and the field listing -------------------------------------------------------------------------------


@pytest.mark.parametrize("head", [
    (sys.executable, "-m", "plasticity_rl.main"),
    # As the plasticity-rl console script runs it: __main__ is not plasticity_rl.main (absl's --help listed no flag).
    (sys.executable, "-c", "from plasticity_rl import main; main.run()"),
])
def test_help_names_the_flags_and_exits_0(head):
  result = _cli("--help", head=head)
  assert result.returncode == 0, result.stderr
  for flag in ("--config:", "--workdir:", "--config_help", "--config.x.y=VALUE"):
    assert flag in result.stdout, result.stdout


def test_every_field_has_a_meaning():
  meanings = fields.meanings()
  missing = [path for path, _ in fields.leaves(config_lib.base_config()) if not meanings.get(path)]
  assert not missing, f"fields without a comment where base_config() sets them: {missing}"
  assert meanings["seed_batching"].startswith("How the learner runs the seeds: ")  # A comment block above.
  assert meanings["reset.period_frames"].startswith("> 0: also every multiple")  # remedies._schedule_fields.
  assert meanings["injection.trigger.threshold"] == "Compared with the moving average of the metric."


def test_listing_gives_every_field_its_value_and_meaning():
  config = testing.configs_module("dqn").get_config("demo")
  lines = fields.listing(config)
  assert len(lines) == len(list(fields.leaves(config_lib.base_config())))
  game = next(line for line in lines if line.lstrip("* ").startswith("game = "))
  assert game.startswith("* game = 'Breakout'") and "One of the 57" in game  # * : the preset sets it.
  frames = next(line for line in lines if "total_frames = " in line)
  assert frames.startswith("* total_frames = 400_000")
  assert any(line.startswith("  learner.batch_size = 32  ") for line in lines)  # The base value: no *.


def test_config_help_lists_the_fields_without_a_run(tmp_path):
  result = _cli("--config=configs/dqn.py:demo", "--config.seed=3", "--config_help")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0].startswith("configs/dqn.py:demo: ") and "fields" in lines[0]
  assert any(line.startswith("* seed = 3 ") for line in lines), result.stdout
  assert len(lines) == 1 + len(list(fields.leaves(config_lib.base_config())))


def test_a_missing_workdir_is_one_line():
  result = _cli("--config=configs/dqn.py:smoke")
  assert result.returncode == 2
  assert result.stderr.strip() == "error: flag --workdir is required: the run's directory (--help lists the flags)"


# -- the start of a run -----------------------------------------------------------------------------------------


def test_overrides_line_names_what_the_command_line_changed():
  preset = testing.configs_module("dqn").get_config("smoke")
  assert fields.overrides_line(preset, preset.copy_and_resolve_references()) == "no overrides"
  config = preset.copy_and_resolve_references()
  config.learner.replay_ratio, config.injection.frames, config.seed = 0.5, (2_000,), 0  # seed: the preset's value.
  assert fields.overrides_line(preset, config) == "overrides: injection.frames=(2000,), learner.replay_ratio=0.5"


def test_the_backend_probe_line_is_dropped_and_warnings_are_kept():
  main.quiet_backend_probe()
  logger = logging.getLogger("jax._src.xla_bridge")

  def record(level, message):
    return logging.LogRecord(logger.name, level, __file__, 1, message, None, None)

  assert not logger.filter(record(logging.INFO, "Unable to initialize backend 'tpu': INTERNAL: no libtpu.so"))
  assert logger.filter(record(logging.WARNING, "Unable to initialize backend 'cuda': …"))
  assert logger.filter(record(logging.INFO, "something else"))


@pytest.mark.slow
def test_a_run_says_what_it_does(tmp_path, run_env):
  """A smoke run with an injection: the overrides line, the compile lines, the event line; no config dump, no
  backend-probe line, no event dict."""
  result = _cli("--config=configs/dqn.py:smoke", f"--workdir={tmp_path / 'run'}", "--config.total_frames=2000",
                "--config.injection.frames=(1600,)", "--config.variant=console", "--config.metrics.period_frames=0",
                "--config.log.period_frames=1000", env=run_env)
  assert result.returncode == 0, result.stderr[-3000:]
  log = result.stderr
  # log.period_frames=1000 is the preset's own value: no override.
  assert ("configs/dqn.py:smoke overrides: injection.frames=(1600,), metrics.period_frames=0, total_frames=2000, "
          "variant='console'; the whole config: ") in log, log
  assert "Unable to initialize backend" not in log and "config:\n" not in log and "{'name'" not in log, log
  assert "compiling the update at 1,008 frames (first call; the loop waits)…" in log, log
  assert "injection at 1,600 frames: trainable " in log and "max |ΔQ| 0 (target 0)" in log, log
  assert "recompiling the update at 1,616 frames (after injection at 1,600 frames; the loop waits, ~" in log, log
  assert "frames 2,000/2,000 (100%) | " in log, log
  assert len(log.splitlines()) < 30, log


# -- progress lines ---------------------------------------------------------------------------------------------


class _Clock:
  def __init__(self):
    self.now = 1000.0

  def __call__(self):
    return self.now


def test_eta_uses_the_recent_rate_of_the_current_phase():
  clock = _Clock()
  throughput = progress.Throughput(0, 0, window_s=100.0, first_line_s=15.0, clock_fn=clock)
  clock.now += 10  # Warm-up at 1,000 fps: the line says when learning starts, not a run ETA at warm-up speed.
  assert (throughput.eta(10_000, 400_000, learning_starts=20_000)
          == "warm-up: learning starts at 20,000 frames in ~0:00:10")
  clock.now += 3
  assert not throughput.early_line(13_000)  # Due 15 s into the phase …
  clock.now += 12
  assert throughput.early_line(25_000) and not throughput.early_line(25_000)  # … once.
  throughput.new_phase(progress.LEARNING, 25_000)
  throughput.tick(25_000, 0)  # A log-period line right at the phase's start: no rate yet, the early line stays due.
  clock.now += 15
  assert throughput.early_line(26_500) and not throughput.early_line(26_500)
  clock.now += 30  # A 30-s compile, then learning at 100 fps: neither the compile nor warm-up counts.
  throughput.new_phase(progress.LEARNING, 25_000)
  clock.now += 50
  assert throughput.eta(30_000, 400_000, learning_starts=20_000) == "ETA 1:01:40"  # 370,000 frames at 100 fps.
  throughput.tick(30_000, 1_000)
  clock.now += 100  # Then 200 fps: the window (100 s) forgets the slower start.
  throughput.tick(50_000, 2_000)
  clock.now += 100
  assert throughput.rate(70_000) == pytest.approx(200.0)
  assert throughput.eta(70_000, 400_000, 20_000) == "ETA 0:27:30"
  fresh = progress.Throughput(0, 0, clock_fn=clock)
  assert fresh.eta(0, 100, 0) == "ETA – (measuring)"


def test_tick_keeps_the_rates_of_the_metrics_rows():
  clock = _Clock()
  throughput = progress.Throughput(100, 10, clock_fn=clock)
  clock.now += 4
  assert throughput.tick(500, 30) == {"fps": 100.0, "updates_per_s": 5.0}
  assert throughput.start_time == 1000.0  # wall_seconds of the summary counts from here.


def _state(width: int):
  return {"params": {"dense": jnp.zeros((4, width))}, "step": jnp.zeros((), jnp.int32)}


def test_compilation_is_announced_first_and_after_a_tree_change(caplog):
  clock = _Clock()
  compilation = progress.Compilation(progress.Throughput(0, 0, clock_fn=clock))
  calls = []
  update = lambda x: calls.append(x) or x
  with caplog.at_level(logging.INFO):
    compilation.call("the update", update, 1, frames=1_000)
    compilation.call("the update", update, 2, frames=1_032)
    compilation.changed(_state(8), _state(8), "reset", 2_000)  # Same shapes: jit reuses its compile.
    compilation.call("the update", update, 3, frames=2_000)
    compilation.changed(_state(8), _state(16), "injection", 3_000)
    compilation.call("the update", update, 4, frames=3_016)
  messages = [r.getMessage() for r in caplog.records if "compil" in r.getMessage()]
  assert calls == [1, 2, 3, 4]
  assert messages[0] == "compiling the update at 1,000 frames (first call; the loop waits)…"
  assert messages[1].startswith("compiled the update in ")
  assert messages[2].startswith("recompiling the update at 3,016 frames (after injection at 3,000 frames; "
                                "the loop waits")
  assert len(messages) == 4


def test_event_line_is_one_readable_line():
  before = {"params_trainable": 1_234, "params_frozen": 0, "params_total": 1_234}
  event = {"name": "injection", "params_trainable": 1_234, "params_frozen": 1_234, "params_total": 2_468,
           "max_abs_dq": 0.0, "max_abs_dq_target": 0.0}
  assert progress.event_line(200_000, before, [event]) == (
      "injection at 200,000 frames: trainable 1,234 → 1,234, frozen 0 → 1,234, max |ΔQ| 0 (target 0)")
  other = {**event, "max_abs_dq": 1.5e-7}
  assert progress.event_line(200_000, before, [event, other]) == (
      "injection at 200,000 frames (2 seeds): trainable 1,234 → 1,234, frozen 0 → 1,234, max |ΔQ| 0 / 1.5e-07 "
      "(target 0)")
  reset = {"name": "reset", "params_trainable": 1_234, "params_frozen": 0, "params_total": 1_234,
           "max_abs_dq": 0.25, "max_abs_dq_target": 0.5, "dormant_active": 7}
  assert progress.event_line(50, before, [reset]) == (
      "reset at 50 frames: trainable 1,234 → 1,234, max |ΔQ| 0.25 (target 0.5), dormant_active 7")


# -- the sweep's status line ------------------------------------------------------------------------------------


def _running_run(tmp_path, rows: list[dict], total_frames=400_000, tail=""):
  workdir = tmp_path / "Boxing" / "drq_eps" / "seed_0"
  workdir.mkdir(parents=True)
  (workdir / "config.json").write_text(json.dumps({"total_frames": total_frames}))
  (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
  return workdir


def test_run_progress_reads_frames_and_eta_from_the_metrics_tail(tmp_path):
  big = {"frames": 0, "kind": "plasticity", **{f"metric_{i}": 0.5 for i in range(300)}}  # ~6 kB a row.
  rows = [{**big, "frames": f} for f in range(0, 300_000, 1_000)]  # ~2 MB before the rows that count.
  rows += [{"frames": 300_000, "kind": "train", "fps": 500.0}, {"frames": 300_000, "kind": "eval"},
           {"frames": 312_000, "kind": "episode", "episode_return": 3.0}]
  workdir = _running_run(tmp_path, rows, tail='{"frames": 313')  # A row being written.
  assert os.path.getsize(workdir / "metrics.jsonl") > 1_000_000
  assert sweep.run_progress(str(workdir)) == "312,000/400,000 frames (78%), ETA 0:02:56"  # 88,000 / 500 fps.
  assert len(sweep.tail_rows(str(workdir / "metrics.jsonl"))) < 20  # Read from the end only.
  empty = tmp_path / "new"
  empty.mkdir()
  assert sweep.run_progress(str(empty)) is None


def test_sweep_status_line_shows_each_running_runs_frames(tmp_path):
  import io  # pylint: disable=g-import-not-at-top
  workdir = _running_run(tmp_path, [{"frames": 100_000, "kind": "train", "fps": 1_000.0}])
  out = io.StringIO()
  status = sweep._Progress(3, out, every_s=0.0)  # pylint: disable=protected-access
  status.tick(1, {"Boxing/drq_eps/seed_0": status.start - 61, "Pong/drq_eps/seed_0": status.start},
              {"Boxing/drq_eps/seed_0": str(workdir), "Pong/drq_eps/seed_0": str(tmp_path / "missing")})
  line = out.getvalue().strip()
  assert line.endswith("running: Boxing/drq_eps/seed_0 0:01:01 (100,000/400,000 frames (25%), ETA 0:05:00), "
                       "Pong/drq_eps/seed_0 0:00:00"), line
