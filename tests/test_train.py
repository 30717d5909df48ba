"""End-to-end tests of the training loop (plasticity_rl.train) and what a run writes."""

import csv
import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from plasticity_rl import config as config_lib
from plasticity_rl import recorder as recorder_lib
from plasticity_rl import train
from plasticity_rl import testing
from plasticity_rl import workdir as workdir_lib
from plasticity_rl.agents import dqn
from plasticity_rl.envs import atari

REPO = pathlib.Path(__file__).resolve().parents[1]


def _smoke_config():
  return testing.configs_module("dqn").get_config("smoke")


def test_episodes_track_raw_returns_and_frames():
  episodes = train.Episodes.zeros(2)

  def step(reward, last, first):
    n = len(reward)
    return atari.EnvStep(np.zeros((n, 84, 84), np.uint8), np.asarray(reward, np.float32), np.zeros(n, bool),
                         np.asarray(last), np.asarray(first), np.zeros(n, np.int32))

  assert episodes.track(step([0.0, 0.0], [False, False], [True, True])) == []  # The reset step.
  assert episodes.track(step([5.0, -1.0], [False, False], [False, False])) == []
  assert episodes.track(step([2.0, 0.0], [True, False], [False, False])) == [(7.0, 8)]
  # Env 0 starts over (the step after its last carries no reward); env 1 goes on.
  assert episodes.track(step([0.0, 3.0], [False, True], [True, False])) == [(2.0, 12)]
  assert episodes.track(step([1.0, 0.0], [True, False], [False, True])) == [(1.0, 4)]


# -- one smoke run, in process (real envpool: Pong's returns are checked) --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  """configs/dqn.py:smoke with 400-frame training episodes, so that episodes end within the run."""
  config = _smoke_config()
  config.env.max_episode_frames = 400
  config_lib.validate(config)
  workdir = str(tmp_path_factory.mktemp("smoke") / "run")
  workdir_lib.prepare_workdir(workdir, config)
  # The loop's update is `update_at` (K batches on the device, the state donated). Caches are cleared first: an
  # earlier test in this process (tests/test_golden.py) may have compiled the same agent already.
  dqn.DQNAgent.update_at.clear_cache()
  dqn.DQNAgent.act.clear_cache()
  summary = train.train(config, workdir)
  compiles = {"update": dqn.DQNAgent.update_at._cache_size(), "act": dqn.DQNAgent.act._cache_size()}
  return config, workdir, summary, compiles


@pytest.mark.slow
def test_smoke_run_metrics(smoke_run):
  config, workdir, summary, _ = smoke_run
  rows = recorder_lib.read_metrics(workdir)
  assert {"run", "train", "episode", "eval"} <= {r["kind"] for r in rows}
  frames = [r["frames"] for r in rows]
  assert frames == sorted(frames)

  train_rows = [r for r in rows if r["kind"] == "train"]
  assert len(train_rows) == config.total_frames // config.log.period_frames
  learning = [r for r in train_rows if r["frames"] > config.replay.learning_starts_frames]
  assert learning and all(math.isfinite(r["loss"]) and r["loss"] >= 0 for r in learning)
  assert all({"q_mean", "td_abs_mean", "grad_norm", "epsilon", "fps"} <= set(r) for r in learning)
  assert train_rows[-1]["epsilon"] == pytest.approx(config.exploration.epsilon_end)

  for r in (r for r in rows if r["kind"] == "episode"):
    assert 0 < r["episode_frames"] <= config.env.max_episode_frames and r["episode_frames"] % 4 == 0
    assert -21 <= r["episode_return"] <= 21  # Pong: raw scores, not clipped per step.

  evals = [r for r in rows if r["kind"] == "eval"]
  assert [r["frames"] for r in evals] == list(range(config.eval.period_frames, config.total_frames + 1,
                                                      config.eval.period_frames))
  assert all(r["episodes"] == config.eval.num_episodes for r in evals)


@pytest.mark.slow
def test_smoke_run_logs_plasticity_metrics(smoke_run):
  config, workdir, _, _ = smoke_run
  rows = [r for r in recorder_lib.read_metrics(workdir) if r["kind"] == "plasticity"]
  period, start = config.metrics.period_frames, config.replay.learning_starts_frames
  step = 4 * config.env.num_envs  # Calls land on the first loop step at or after each multiple of the period.
  expected = range(-(-start // period) * period, config.total_frames + 1, period)
  assert len(rows) == len(expected) and all(0 <= r["frames"] - f < step for r, f in zip(rows, expected))
  for r in rows:
    assert 0 <= r["dormant_0.1/head/dense_0"] <= 1 and 0 <= r["fau"] <= 1
    assert 1 <= r["srank"] <= config.network.hidden * config.network.width
    assert math.isfinite(r["grad_norm"]) and r["distance_from_init"] > 0


@pytest.mark.slow
def test_metric_trigger_injects_and_adaptive_replay_ratio_switches(tmp_path, fake_envpool):
  """A trigger that always holds fires `max_count` times; a settled FAU raises the replay ratio once."""
  config = _smoke_config()
  config.injection.trigger.update(metric="dormant_0", threshold=-1.0, window=2, min_gap_frames=0, max_count=2)
  config.learner.adaptive_replay_ratio.update(enabled=True, low=0.0625, high=0.25, window=2, tolerance=1.0)
  config_lib.validate(config)
  workdir = str(tmp_path / "run")
  workdir_lib.prepare_workdir(workdir, config)
  train.train(config, workdir)
  rows = recorder_lib.read_metrics(workdir)
  measured = [r["frames"] for r in rows if r["kind"] == "plasticity"]
  injections = [r for r in rows if r["kind"] == "event" and r["name"] == "injection"]
  # Window 2: the first firing needs two metric calls, the second two more.
  assert [r["frames"] for r in injections] == [measured[1], measured[3]]
  assert all(r["trigger"] == "dormant_0" and r["max_abs_dq"] <= 1e-5 for r in injections)
  assert injections[-1]["params_frozen"] == 2 * injections[0]["params_frozen"] > 0
  switches = [r for r in rows if r["kind"] == "event" and r["name"] == "replay_ratio"]
  assert [r["frames"] for r in switches] == [measured[1]]
  ratios = {r["frames"]: r["replay_ratio"] for r in rows if r["kind"] == "train"}
  assert {ratios[f] for f in ratios if f < measured[1]} == {0.0625}
  assert {ratios[f] for f in ratios if f > measured[1]} == {0.25}


@pytest.mark.slow
def test_smoke_run_eval_csv(smoke_run):
  config, workdir, _, _ = smoke_run
  with open(os.path.join(workdir, "eval.csv"), newline="") as f:
    reader = csv.DictReader(f)
    assert tuple(reader.fieldnames) == ("game", "variant", "seed", "frames", "episode_return", "episode_frames")
    rows = list(reader)
  evals = recorder_lib.read_metrics(workdir, "eval")
  assert {int(r["frames"]) for r in rows} == {e["frames"] for e in evals}
  for e in evals:
    episodes = [r for r in rows if int(r["frames"]) == e["frames"]]
    assert len(episodes) == config.eval.num_episodes  # At least one row per eval: one per episode.
    assert np.mean([float(r["episode_return"]) for r in episodes]) == pytest.approx(e["episode_return_mean"])
  for r in rows:
    assert (r["game"], r["variant"], r["seed"]) == ("Pong", "baseline", "0")
    assert 0 < int(r["episode_frames"]) <= config.eval.max_episode_frames


@pytest.mark.slow
def test_smoke_run_summary(smoke_run):
  config, workdir, summary, _ = smoke_run
  with open(os.path.join(workdir, "summary.json")) as f:
    saved = json.load(f)
  evals = recorder_lib.read_metrics(workdir, "eval")
  assert saved["frames"] == summary["frames"] == config.total_frames
  assert saved["eval"] == [[e["frames"], e["episode_return_mean"]] for e in evals]
  assert saved["final_eval_return"] == evals[-1]["episode_return_mean"]
  assert saved["best_eval_return"] == max(e["episode_return_mean"] for e in evals)
  # One update per 1/replay_ratio agent steps after learning starts: (4,000 − 1,000) frames / 4 × 0.25.
  expected = (config.total_frames - config.replay.learning_starts_frames) / 4 * config.learner.replay_ratio
  assert abs(saved["updates"] - expected) <= config.env.num_envs * config.learner.replay_ratio
  assert saved["params_trainable"] == saved["params_total"] > 0
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["env"]["max_episode_frames"] == 400


@pytest.mark.slow
def test_smoke_run_learning_curve(smoke_run):
  _, workdir, summary, _ = smoke_run
  path = os.path.join(workdir, "learning_curve.png")
  assert summary["learning_curve"] == path
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.getsize(path) > 1_000


@pytest.mark.slow
def test_smoke_run_tensorboard(smoke_run):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  _, workdir, _, _ = smoke_run
  tb_dir = os.path.join(workdir, "tb")
  assert any(name.startswith("events.out.tfevents") for name in os.listdir(tb_dir))
  accumulator = event_accumulator.EventAccumulator(tb_dir)
  accumulator.Reload()
  scalars = accumulator.Tags()["scalars"]
  assert {"train/loss", "train/q_mean", "eval/episode_return_mean", "episode/episode_return"} <= set(scalars)
  losses = accumulator.Scalars("train/loss")
  train_rows = [r for r in recorder_lib.read_metrics(workdir, "train") if "loss" in r]
  assert [e.step for e in losses] == [r["frames"] for r in train_rows]
  np.testing.assert_allclose([e.value for e in losses], [r["loss"] for r in train_rows], rtol=1e-6)


@pytest.mark.slow
def test_smoke_run_compiles_update_and_act_once(smoke_run):
  _, _, _, compiles = smoke_run
  assert compiles["update"] == 1
  assert compiles["act"] == 2  # One batch shape for the training envs, one for the evaluation envs.


# -- the command line, end to end -----------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_smoke_run(tmp_path, run_env):
  workdir = tmp_path / "run"
  result = subprocess.run(
      [sys.executable, "-m", "plasticity_rl.main", "--config=configs/dqn.py:smoke", f"--workdir={workdir}",
       "--config.total_frames=1600", "--config.eval.period_frames=1600", "--config.log.period_frames=800"],
      cwd=REPO, env=run_env, capture_output=True, text=True, timeout=300,
      check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "== Pong · baseline · seed 0 ==" in result.stdout
  assert "frames 1,600" in result.stdout
  for name in ("config.json", "metrics.jsonl", "eval.csv", "summary.json", "learning_curve.png"):
    assert (workdir / name).is_file(), name
  assert json.loads((workdir / "summary.json").read_text())["frames"] == 1600
  assert len(recorder_lib.read_eval(str(workdir))) == 2  # One evaluation of eval.num_episodes = 2.


@pytest.mark.slow
def test_expansion_in_the_loop_grows_the_active_network(tmp_path, fake_envpool):
  """configs/expansion.py:smoke: masks at frame 0, then grow-and-prune events with more active params."""
  config = testing.configs_module("expansion").get_config("smoke")
  config.total_frames = 3_000
  config_lib.validate(config)
  workdir = str(tmp_path / "run")
  workdir_lib.prepare_workdir(workdir, config)
  train.train(config, workdir)
  rows = recorder_lib.read_metrics(workdir)
  events = [r for r in rows if r["kind"] == "event" and r["name"] == "expansion"]
  assert events[0]["frames"] < config.replay.learning_starts_frames and "dormant_active" not in events[0]
  assert events[0]["active_units/dense_0"] == 0.25
  active = [r["params_active"] for r in events]
  assert len(events) >= 3 and active[-1] > active[0] and all(r["params_active"] < r["params_total"] for r in events)
  assert all("dormant_active" in r for r in events[1:])
  assert all("params_active" in r for r in rows if r["kind"] == "train")


@pytest.mark.slow
def test_a_branch_with_another_seed_draws_its_own_randomness(tmp_path, fake_envpool):
  """reincarnate.load="all" continues the saved agent with its keys and replay stream; with another seed than
  the source's (a diagnosis branch, a sweep's seeds), the branch draws its own keys and replay samples."""
  import jax  # pylint: disable=g-import-not-at-top
  from plasticity_rl import checkpoint  # pylint: disable=g-import-not-at-top
  source = _smoke_config()
  source.total_frames, source.eval.period_frames = 1_600, 1_600
  config_lib.validate(source)
  workdir_lib.prepare_workdir(str(tmp_path / "source"), source)
  train.train(source, str(tmp_path / "source"))
  branches = {}
  for seed in (0, 1):
    config = _smoke_config()
    config.seed, config.total_frames, config.eval.period_frames = seed, 2_000, 2_000
    config.reincarnate.update(path=str(tmp_path / "source"), load="all")
    config_lib.validate(config)
    workdir = str(tmp_path / f"seed_{seed}")
    workdir_lib.prepare_workdir(workdir, config)
    train.train(config, workdir)
    branches[seed] = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True).restore()
  saved = checkpoint.Checkpointer(str(tmp_path / "source" / "checkpoints"), read_only=True).restore()
  surgery_key = lambda restored: jax.random.key_data(restored.keys()["surgery"]).tolist()  # Split by surgeries only.
  assert surgery_key(branches[0]) == surgery_key(saved)  # Same seed: the saved agent's own keys.
  assert surgery_key(branches[1]) == jax.random.key_data(jax.random.split(jax.random.key(1), 4)[3]).tolist()
  act_key = lambda restored: jax.random.key_data(restored.keys()["act"]).tolist()  # Split once per step.
  assert act_key(branches[1]) != act_key(branches[0])
  assert branches[1].replay["rng_state"].tolist() != branches[0].replay["rng_state"].tolist()
