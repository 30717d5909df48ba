"""config.num_seeds: N agents in one process equal N single-seed runs; sharded over devices; per-seed checkpoints."""

import os
import pathlib
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from plasticity_rl import checkpoint
from plasticity_rl import config as config_lib
from plasticity_rl import multi_seed
from plasticity_rl import recorder as recorder_lib
from plasticity_rl import testing
from plasticity_rl import workdir as workdir_lib
from plasticity_rl.agents import dqn

REPO = pathlib.Path(__file__).resolve().parents[1]
_RUN = ["--config.log.learning_curve=False", "--config.log.tensorboard=False"]
_INJECTED = "--config.injection.frames=(2000,)"


def _smoke_config(**overrides):
  config = testing.configs_module("dqn").get_config("smoke")
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def _states_and_batches(agent, seeds):
  states = [agent.init(jax.random.key(s)) for s in seeds]
  batches = [testing.random_batch(s, 8, agent.obs_shape, agent.num_actions) for s in seeds]
  return states, batches


@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_seed_learner_equals_separate_learners(batching):
  """Same seeds -> the same first updates and actions as one learner per seed (loop: exactly)."""
  agent = dqn.make_agent(_smoke_config(), num_actions=6)
  seeds = (0, 1, 2)
  states, batches = _states_and_batches(agent, seeds)
  keys = [jax.random.key(10 + s) for s in seeds]
  learner = multi_seed.SeedLearner(agent, states, keys, batching)
  assert learner.batching == batching
  obs = np.stack([b["obs"][:4] for b in batches])
  actions = learner.act(obs, 0.5)
  infos = [learner.update(batches) for _ in range(3)]
  for i, (state, batch, key) in enumerate(zip(states, batches, keys)):
    expected_actions, _ = agent.act(state.params, obs[i], key, 0.5)
    np.testing.assert_array_equal(actions[i], np.asarray(expected_actions))
    for info in infos:
      state, expected = agent.update(state, batch)
      compare = np.testing.assert_array_equal if batching == "loop" else np.testing.assert_allclose
      compare(np.asarray(info["loss"][i]), np.asarray(expected["loss"]), **({} if batching == "loop" else
                                                                             {"rtol": 1e-5}))
    for got, want in zip(jax.tree.leaves(learner.states[i].params), jax.tree.leaves(state.params)):
      np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
  assert [int(s.num_updates) for s in learner.states] == [3, 3, 3]


def test_seeds_are_independent_agents():
  agent = dqn.make_agent(_smoke_config(), num_actions=6)
  states, _ = _states_and_batches(agent, (0, 1))
  learner = multi_seed.SeedLearner(agent, states, [jax.random.key(0)] * 2, "vmap")
  a, b = (jax.tree.leaves(s.params) for s in learner.states)
  assert not all(np.array_equal(x, y) for x, y in zip(a, b))


def test_auto_batching_is_loop_on_cpu_and_mesh_divides_seeds():
  assert multi_seed.resolve_batching("auto") == ("loop" if jax.default_backend() == "cpu" else "vmap")
  for n in (1, 3, 4, 6):
    assert n % multi_seed.seed_mesh(n).devices.size == 0


def test_config_refuses_per_seed_decisions_with_several_seeds():
  config = _smoke_config(num_seeds=2)
  config.injection.trigger.metric = "fau"
  with pytest.raises(config_lib.ConfigError, match="injection.trigger.metric.*num_seeds=2"):
    config_lib.validate(config)
  with pytest.raises(config_lib.ConfigError, match="config.num_seeds"):
    config_lib.validate(_smoke_config(num_seeds=0))
  with pytest.raises(config_lib.ConfigError, match="config.seed_batching"):
    config_lib.validate(_smoke_config(seed_batching="pmap"))


def test_parent_workdir_may_not_be_a_run(tmp_path):
  workdir_lib.prepare_workdir(str(tmp_path), _smoke_config())
  with pytest.raises(workdir_lib.WorkdirError, match="single-seed run"):
    workdir_lib.check_parent_workdir(str(tmp_path))
  workdir_lib.check_parent_workdir(str(tmp_path / "new"))


# -- runs -----------------------------------------------------------------------------------------------------
# The equality of seed n of an N-seed run with the single run is the loop's (its seeding, batching, sharding): on
# the fake envpool (tests/conftest.py). The stop/resume/reincarnation runs are real envpool.


def _command(workdir, *overrides):
  return [sys.executable, "-m", "plasticity_rl.main", "--config=configs/dqn.py:smoke", f"--workdir={workdir}",
          *_RUN, *overrides]


def _run(env, workdir, *overrides):
  return subprocess.run(_command(workdir, *overrides), cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=400, check=False)


def _losses(workdir) -> list[float]:
  return [r["loss"] for r in recorder_lib.read_metrics(str(workdir), "train") if "loss" in r]


@pytest.fixture(scope="module")
def single_seed_1(fake_run_env, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("single") / "run"
  result = _run(fake_run_env, workdir, _INJECTED, "--config.seed=1")
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


@pytest.mark.slow
def test_two_seeds_in_one_process_equal_two_single_runs(fake_run_env, single_seed_1, tmp_path):
  """Looped seeds: seed 1 of a 2-seed run writes exactly what the single run with seed 1 writes."""
  result = _run(fake_run_env, tmp_path / "seeds", _INJECTED, "--config.num_seeds=2")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "== Pong · baseline · seed 0 ==" in result.stdout and "== Pong · baseline · seed 1 ==" in result.stdout
  seed_1 = tmp_path / "seeds" / "seed_1"
  assert len(_losses(seed_1)) >= 3 and _losses(seed_1) == _losses(single_seed_1)
  assert recorder_lib.read_eval(str(seed_1)) == recorder_lib.read_eval(str(single_seed_1))
  assert {r["seed"] for r in recorder_lib.read_eval(str(tmp_path / "seeds" / "seed_0"))} == {"0"}
  assert _losses(tmp_path / "seeds" / "seed_0") != _losses(seed_1)
  events = recorder_lib.read_metrics(str(seed_1), "event")
  assert [(e["name"], e["frames"], e["max_abs_dq"]) for e in events] == [("injection", 2000, 0.0)]
  assert not (tmp_path / "seeds" / "config.json").exists()
  listing = subprocess.run([sys.executable, "-m", "plasticity_rl.list_checkpoints", f"--workdir={tmp_path / 'seeds'}",
                            "--quick"], capture_output=True, text=True, check=False)
  assert listing.returncode == 0, listing.stderr
  assert [line for line in listing.stdout.splitlines() if line.endswith(":")] == [
      f"{tmp_path / 'seeds' / f'seed_{s}' / 'checkpoints'}:" for s in (0, 1)]


@pytest.mark.slow
def test_sharded_over_two_devices(fake_run_env, single_seed_1, tmp_path):
  """vmap over seeds, sharded over 2 (forced host) devices: the same learning as the single run, to rounding."""
  env = {**fake_run_env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  result = _run(env, tmp_path / "seeds", _INJECTED, "--config.num_seeds=2", "--config.seed_batching=vmap")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "(vmap; 2 devices)" in result.stderr
  run = recorder_lib.read_metrics(str(tmp_path / "seeds" / "seed_1"), "run")[0]
  assert run["seed_batching"] == "vmap" and run["num_seeds"] == 2
  np.testing.assert_allclose(_losses(tmp_path / "seeds" / "seed_1"), _losses(single_seed_1), rtol=1e-3)


@pytest.mark.slow
def test_stop_resume_and_reincarnate_one_seed(run_env, tmp_path):
  """SIGTERM saves every seed; a seed missing its newest checkpoint resumes all from the common one."""
  workdir = tmp_path / "seeds"
  overrides = (_INJECTED, "--config.num_seeds=2", "--config.checkpoint.period_frames=496")
  proc = subprocess.Popen(_command(workdir, *overrides), cwd=REPO, env=run_env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  testing.wait_for(lambda: testing.logged_frames(workdir / "seed_1") > 1500, proc)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
  steps = [checkpoint.Checkpointer(str(workdir / f"seed_{s}" / "checkpoints"), read_only=True).steps() for s in (0, 1)]
  assert steps[0] == steps[1] and len(steps[0]) == 2, steps
  os.rename(workdir / "seed_1" / "checkpoints" / str(steps[1][-1]), tmp_path / "removed")  # seed 1 lost its newest.

  result = _run(run_env, workdir, *overrides)
  assert result.returncode == 0, result.stderr[-3000:]
  config = _smoke_config()
  config.injection.frames = (2000,)
  for seed in (0, 1):
    seed_dir = workdir / f"seed_{seed}"
    resumes = recorder_lib.read_metrics(str(seed_dir), "resume")
    assert [r["frames"] for r in resumes] == [steps[0][0]]
    summary = recorder_lib.read_metrics(str(seed_dir), "train")[-1]
    assert summary["frames"] == config.total_frames and summary["updates"] == testing.budget_updates(config)
    testing.check_run_logs(seed_dir, config)
    restored = checkpoint.Checkpointer(str(seed_dir / "checkpoints"), read_only=True).restore()
    assert restored.step == config.total_frames and restored.meta["config"]["seed"] == seed

  # One seed's workdir is a single run's: it reincarnates into a new single-seed run.
  result = _run(run_env, tmp_path / "student", f"--config.reincarnate.path={workdir / 'seed_1'}",
                "--config.total_frames=1600", "--config.eval.period_frames=1600")
  assert result.returncode == 0, result.stderr[-3000:]
  run = recorder_lib.read_metrics(str(tmp_path / "student"), "run")[0]
  assert run["reincarnated_from"] == str(workdir / "seed_1" / "checkpoints" / "4000")
