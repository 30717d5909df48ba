"""config.num_seeds: N agents in one process equal N single-seed runs; sharded over devices; per-seed checkpoints."""

import json
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
from plasticity_rl import params_tree
from plasticity_rl import recorder as recorder_lib
from plasticity_rl import surgery
from plasticity_rl import testing
from plasticity_rl import workdir as workdir_lib
from plasticity_rl.agents import dqn

REPO = pathlib.Path(__file__).resolve().parents[1]
_RUN = ["--config.log.learning_curve=False", "--config.log.tensorboard=False"]
_INJECTED = "--config.injection.frames=(2000,)"
_SMALL = (36, 36, 4)  # The smallest frames the Nature torso takes: the learner tests' compiles stay short.


def _smoke_config(**overrides):
  config = testing.configs_module("dqn").get_config("smoke")
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def _separate(agent, state, batches, key, obs, epsilon):
  """What one single-seed learner does with the same inputs: its actions, each update's loss, its state."""
  actions, _ = agent.act(state.params, obs, key, epsilon)
  losses = []
  for k in range(len(batches["action"])):
    state, info = agent.update(state, {name: x[k] for name, x in batches.items()})
    losses.append(float(info["loss"]))
  return np.asarray(actions), losses, state


def _stacked(batches, k):
  return {name: np.stack([b[name] for b in batches[:k]]) for name in batches[0]}


@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_seed_learner_equals_separate_learners(batching):
  """Same seeds -> the same actions and updates as one learner per seed (loop: exactly), also when the seeds do
  different numbers of updates (an inactive slot under vmap changes nothing)."""
  agent = dqn.make_agent(_smoke_config(), num_actions=6, obs_shape=_SMALL)
  seeds = (0, 1, 2)
  states = [agent.init(jax.random.key(s)) for s in seeds]
  keys = [jax.random.key(10 + s) for s in seeds]
  per_seed = [[testing.random_batch(100 * s + k, 8, agent.obs_shape, 6) for k in range(3)] for s in seeds]
  dues = (3, 1, 0)  # Seed 2 does no update this iteration.
  learner = multi_seed.SeedLearner(agent, states, keys, batching)
  assert learner.batching == batching
  obs = np.stack([b[0]["obs"][:4] for b in per_seed])
  actions = learner.act(obs, 0.5)
  learner.update([_stacked(b, d) if d else None for b, d in zip(per_seed, dues)])
  sums = learner.info_sums()
  compare = (np.testing.assert_array_equal if batching == "loop" else
             lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-5))
  for i, (state, key, due) in enumerate(zip(states, keys, dues)):
    want_actions, losses, want_state = _separate(agent, state, _stacked(per_seed[i], due) if due else
                                                 {"action": []}, key, obs[i], 0.5)
    np.testing.assert_array_equal(actions[i], want_actions)
    assert sums[i][1] == due
    if due:
      compare(np.float32(sums[i][0]["loss"]), np.float32(sum(np.float32(x) for x in losses)))
    else:
      assert sums[i][0] is None
    for got, want in zip(jax.tree.leaves(learner.states[i].params), jax.tree.leaves(want_state.params)):
      np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
  assert [int(s.num_updates) for s in learner.states] == list(dues)


def test_seed_learner_groups_seeds_by_structure_under_vmap():
  """One seed injected (a new branch), the others not: the seeds are grouped by tree structure and each still
  acts and learns as its own single-seed learner would."""
  config = _smoke_config()
  agent = dqn.make_agent(config, num_actions=6, obs_shape=_SMALL)
  states = [agent.init(jax.random.key(s)) for s in (0, 1, 2)]
  keys = [jax.random.key(10 + s) for s in (0, 1, 2)]
  learner = multi_seed.SeedLearner(agent, states, keys, "vmap")
  assert learner.groups == [[0, 1, 2]]
  inject = surgery.injection(agent, surgery.injection_plan(config, agent.network))
  injected = inject(states[1], jax.random.key(5), None)
  learner.set_state(1, injected)
  assert sorted(learner.groups) == [[0, 2], [1]]
  assert params_tree.count_frozen(learner.states[1].params) > 0 == params_tree.count_frozen(learner.states[0].params)
  batches = [_stacked([testing.random_batch(7 + s, 8, agent.obs_shape, 6)], 1) for s in (0, 1, 2)]
  obs = np.stack([b["obs"][0, :4] for b in batches])
  actions = learner.act(obs, 0.5)
  learner.update(batches)
  for i, state in enumerate([states[0], injected, states[2]]):
    want_actions, losses, want_state = _separate(agent, state, batches[i], keys[i], obs[i], 0.5)
    np.testing.assert_array_equal(actions[i], want_actions)
    np.testing.assert_allclose(learner.info_sums()[i][0]["loss"], losses[0], rtol=1e-5)
    for got, want in zip(jax.tree.leaves(learner.states[i].params), jax.tree.leaves(want_state.params)):
      np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_seeds_are_independent_agents():
  agent = dqn.make_agent(_smoke_config(), num_actions=6, obs_shape=_SMALL)
  states = [agent.init(jax.random.key(s)) for s in (0, 1)]
  learner = multi_seed.SeedLearner(agent, states, [jax.random.key(0)] * 2, "vmap")
  a, b = (jax.tree.leaves(s.params) for s in learner.states)
  assert not all(np.array_equal(x, y) for x, y in zip(a, b))


def test_auto_batching_is_loop_on_cpu_and_mesh_divides_seeds():
  assert multi_seed.resolve_batching("auto") == ("loop" if jax.default_backend() == "cpu" else "vmap")
  assert multi_seed.resolve_batching("vmap", num_seeds=1) == "loop"  # One seed: a plain run.
  for n in (1, 3, 4, 6):
    assert n % multi_seed.seed_mesh(n).devices.size == 0


def test_config_takes_per_seed_decisions_with_several_seeds():
  triggered = _smoke_config(num_seeds=2)  # Per seed: each seed's trigger, replay ratio and review are its own.
  triggered.injection.trigger.metric = "fau"
  triggered.learner.adaptive_replay_ratio.update(enabled=True, high=triggered.learner.replay_ratio)
  config_lib.validate(triggered)
  expanded = testing.configs_module("expansion").get_config("smoke")
  expanded.num_seeds = 2
  config_lib.validate(expanded)
  with pytest.raises(config_lib.ConfigError, match="config.num_seeds"):
    config_lib.validate(_smoke_config(num_seeds=0))
  with pytest.raises(config_lib.ConfigError, match="config.seed_batching"):
    config_lib.validate(_smoke_config(seed_batching="pmap"))


def test_reincarnation_source_per_seed(tmp_path):
  """`{seed}` in reincarnate.path is each seed's number; a missing seed's source is refused, naming it."""
  config = _smoke_config(num_seeds=2)
  config.reincarnate.path = str(tmp_path / "seed_{seed}")
  (tmp_path / "seed_0").mkdir()
  with pytest.raises(config_lib.ConfigError, match=r"config.reincarnate.path.*seed_1.*\{seed\} is each seed"):
    config_lib.validate(config)
  (tmp_path / "seed_1").mkdir()
  config_lib.validate(config)
  assert [checkpoint.source_path(workdir_lib.seed_config(config, s)) for s in (0, 1)] == [
      str(tmp_path / "seed_0"), str(tmp_path / "seed_1")]



def test_reincarnation_source_per_game_and_seed(tmp_path):
  """`{game}` is the (canonical) game, as a sweep's ROOT/<game>/<variant>/seed_<n> names it: a diagnosis sweep
  branches each game's seeds from their own baselines with one path."""
  config = _smoke_config(num_seeds=2, game="pong")
  config.reincarnate.path = str(tmp_path / "{game}" / "baseline" / "seed_{seed}")
  (tmp_path / "Pong" / "baseline" / "seed_0").mkdir(parents=True)
  with pytest.raises(config_lib.ConfigError, match=r"Pong/baseline/seed_1.*\{seed\} is each seed, \{game\} is the game"):
    config_lib.validate(config)
  (tmp_path / "Pong" / "baseline" / "seed_1").mkdir()
  config_lib.validate(config)
  assert [checkpoint.source_path(workdir_lib.seed_config(config, s)) for s in (0, 1)] == [
      str(tmp_path / "Pong" / "baseline" / f"seed_{s}") for s in (0, 1)]


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
@pytest.mark.parametrize("case", ["triggered", "expansion"])
def test_per_seed_decisions_of_two_seeds_equal_the_single_run(case, tmp_path):
  """A metric trigger with the adaptive replay ratio, or expansion (its review), with two seeds in one process:
  seed 0 writes every row the golden single run writes (tests/golden/<case>.json; exact on its CPU), seed 1
  learns on its own."""
  import test_golden as golden  # pylint: disable=g-import-not-at-top  (tests/ is on the path under pytest)
  config = golden.CASES[case]()
  config.num_seeds = 2
  record = json.loads(json.dumps(golden._run(config, str(tmp_path / case))))  # pylint: disable=protected-access
  multi_only = {"num_seeds", "seed_batching"}
  got = {"seed_0": {"metrics": [{k: v for k, v in r.items() if k not in multi_only}
                                for r in record["seed_0"]["metrics"]], "eval": record["seed_0"]["eval"]}}
  want = json.loads((golden.GOLDEN / f"{case}.json").read_text())
  if want["cpu"] == golden._cpu():  # pylint: disable=protected-access
    for want_row, got_row in zip(want["runs"]["seed_0"]["metrics"], got["seed_0"]["metrics"], strict=True):
      assert got_row == want_row, f"first differing row at {want_row['frames']} frames ({want_row['kind']})"
    assert got["seed_0"]["eval"] == want["runs"]["seed_0"]["eval"]
  else:
    assert golden._shape(got) == golden._shape(want["runs"])  # pylint: disable=protected-access
  names = [[r["name"] for r in record[s]["metrics"] if r["kind"] == "event"] for s in ("seed_0", "seed_1")]
  assert names[0] and names[1]  # Each seed's own decisions.
  losses = [[r.get("loss") for r in record[s]["metrics"] if r["kind"] == "train"] for s in ("seed_0", "seed_1")]
  assert losses[0] != losses[1]


@pytest.mark.slow
def test_seed_n_reviews_its_replay_as_the_single_run_with_seed_n(tmp_path):
  """Expansion with a review that starts (and draws, probability 0.5): seed 1 of a two-seed run writes every row
  the single run with seed 1 writes (the review's generator is the seed's own)."""
  import test_golden as golden  # pylint: disable=g-import-not-at-top
  def config(**fields):
    c = golden.CASES["expansion"]()
    c.expansion.update(review_window=2, review_tolerance=1.0)
    for name, value in fields.items():
      setattr(c, name, value)
    return c
  two = json.loads(json.dumps(golden._run(config(num_seeds=2), str(tmp_path / "two"))))  # pylint: disable=protected-access
  alone = json.loads(json.dumps(golden._run(config(seed=1), str(tmp_path / "alone"))))  # pylint: disable=protected-access
  rows = [{k: v for k, v in r.items() if k not in ("num_seeds", "seed_batching")} for r in two["seed_1"]["metrics"]]
  assert any(r.get("name") == "expansion_review" for r in rows)
  assert rows == alone["seed_0"]["metrics"] and two["seed_1"]["eval"] == alone["seed_0"]["eval"]


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
