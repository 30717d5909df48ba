"""Checkpoints: exact restore, fallback past corrupt steps, reincarnation, and kill -9 / SIGTERM resumes."""

import copy
import csv
import glob
import json
import logging
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from plasticity_rl import checkpoint
from plasticity_rl import config as config_lib
from plasticity_rl import params_tree
from plasticity_rl import recorder as recorder_lib
from plasticity_rl import replay as replay_lib
from plasticity_rl import surgery
from plasticity_rl import testing
from plasticity_rl.agents import dqn

REPO = pathlib.Path(__file__).resolve().parents[1]


def _smoke_config():
  return testing.configs_module("dqn").get_config("smoke")


def _tree_equal(a, b) -> bool:
  if jax.tree.structure(a) != jax.tree.structure(b):
    return False
  return all(np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y)
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _key_data(state: dqn.TrainState):
  return np.asarray(jax.random.key_data(state.rng))


@pytest.fixture(scope="module")
def agent():
  return dqn.make_agent(_smoke_config(), num_actions=6)


@pytest.fixture(scope="module")
def fresh_state(agent):
  return jax.jit(agent.init)(jax.random.key(0))


@pytest.fixture(scope="module")
def injected_state(agent, fresh_state):
  """A trained-looking state: one injection with growth (tuples of branches, a wider trainable head)."""
  state = surgery.inject(fresh_state, jax.random.key(1), network=agent.network, optimizer=agent.optimizer,
                         obs_shape=agent.obs_shape, layers=("dense_0", "dense_1"), hidden=24)
  batch = {"obs": np.random.default_rng(0).integers(0, 256, (8, 84, 84, 4), dtype=np.uint8),
           "action": np.arange(8) % 6, "reward": np.ones(8, np.float32), "discount": np.full(8, 0.99, np.float32)}
  batch["next_obs"] = batch["obs"][::-1]
  for _ in range(2):
    state, _ = agent.update(state, batch)
  return state


def _replay(num_added: int = 30) -> replay_lib.ReplayBuffer:
  buffer = replay_lib.ReplayBuffer(400, 4, seed=3)
  rng = np.random.default_rng(0)
  for i in range(num_added):
    buffer.add(rng.integers(0, 256, (4, 84, 84), dtype=np.uint8), rng.integers(0, 6, 4), rng.normal(size=4),
               rng.random(4) < 0.05, np.zeros(4, bool), np.full(4, i == 0))
  return buffer


def _save(directory, state, steps=(16,), replay=None, **kwargs) -> checkpoint.Checkpointer:
  checkpointer = checkpoint.Checkpointer(str(directory), **kwargs)
  for step in steps:
    checkpointer.save(step, state=state, keys={"act": jax.random.key(7), "eval": jax.random.key(8)},
                      loop={"frames": step, "updates": 2}, replay=replay, config=_smoke_config())
  checkpointer.wait()
  return checkpointer


# -- tree structure ---------------------------------------------------------------------------------------------


def test_tree_json_round_trip_keeps_injected_structure(injected_state):
  params = injected_state.params
  spec = checkpoint.tree_to_json(params)
  assert isinstance(params_tree.plus_branches(spec), list) and len(params_tree.plus_branches(spec)) == 1
  assert params_tree.main_layers(spec)["dense_0"]["linear"]["kernel"] == "float32[784,24]"
  abstract = checkpoint.abstract_tree(json.loads(json.dumps(spec)))
  assert jax.tree.structure(abstract) == jax.tree.structure(params)
  assert [(a.shape, a.dtype) for a in jax.tree.leaves(abstract)] == [(p.shape, p.dtype) for p in
                                                                     jax.tree.leaves(params)]
  with pytest.raises(TypeError, match="dicts, tuples and arrays"):
    checkpoint.tree_to_json({"a": [np.zeros(2)]})


# -- save / restore ---------------------------------------------------------------------------------------------


def test_restore_equals_saved_leaf_by_leaf(tmp_path, agent, injected_state, fresh_state):
  buffer = _replay()
  _save(tmp_path, injected_state, replay=buffer).close()

  restored = checkpoint.Checkpointer(str(tmp_path)).restore(optimizer=agent.optimizer)
  assert restored.step == 16 and restored.loop == {"frames": 16, "updates": 2}
  state = restored.train_state(fresh_state, agent.optimizer)
  assert jax.tree.structure(state) == jax.tree.structure(injected_state)
  for field in ("params", "target_params", "init_params", "opt_state", "num_updates"):
    assert _tree_equal(getattr(state, field), getattr(injected_state, field)), field
  np.testing.assert_array_equal(_key_data(state), _key_data(injected_state))
  keys = restored.keys()
  np.testing.assert_array_equal(jax.random.key_data(keys["act"]), jax.random.key_data(jax.random.key(7)))

  loaded = replay_lib.ReplayBuffer(400, 4, seed=99)
  loaded.load_state_dict(restored.replay)
  for name, value in buffer.state_dict().items():
    np.testing.assert_array_equal(loaded.state_dict()[name], value, err_msg=name)
  assert _tree_equal(loaded.sample(16), buffer.sample(16))  # The replay's RNG too.

  # The restored state drives the same jitted update, without a re-trace, to the same result.
  batch = buffer.sample(8)
  batch = {k: batch[k] for k in ("obs", "action", "reward", "discount", "next_obs")}
  cache = dqn.DQNAgent.update._cache_size()
  expected, _ = agent.update(injected_state, batch)
  cache_after_original = dqn.DQNAgent.update._cache_size()
  got, _ = agent.update(state, batch)
  assert dqn.DQNAgent.update._cache_size() == cache_after_original <= cache + 1
  assert _tree_equal(got.params, expected.params)


def test_save_is_unaffected_by_later_replay_writes(tmp_path, injected_state):
  buffer = _replay(num_added=60)
  snapshot = copy.deepcopy(buffer.state_dict())
  checkpointer = checkpoint.Checkpointer(str(tmp_path))
  checkpointer.save(16, state=injected_state, keys={}, loop={"frames": 16}, replay=buffer)
  rng = np.random.default_rng(1)
  for _ in range(200):  # Overwrites every slot of the ring while the write may still run.
    buffer.add(rng.integers(0, 256, (4, 84, 84), dtype=np.uint8), np.zeros(4, int), np.ones(4),
               np.zeros(4, bool), np.zeros(4, bool), np.zeros(4, bool))
  checkpointer.close()
  restored = checkpoint.Checkpointer(str(tmp_path)).restore(with_opt_state=False)
  for name in checkpoint.REPLAY_ARRAYS + ("num_added",):
    np.testing.assert_array_equal(restored.replay[name], snapshot[name], err_msg=name)


def test_max_to_keep_leaves_no_partial_steps(tmp_path, injected_state):
  checkpointer = _save(tmp_path, injected_state, steps=(16, 32, 48, 64), max_to_keep=2)
  assert checkpointer.steps() == [48, 64]
  checkpointer.close()
  assert sorted(os.listdir(tmp_path)) == ["48", "64"]  # No todelete/ or temporary directories left.


def _largest_file(step_dir, item="state"):
  return max(glob.glob(os.path.join(step_dir, item, "**", "*"), recursive=True), key=os.path.getsize)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # orbax's failed reads.
def test_corrupt_latest_falls_back_with_a_warning(tmp_path, agent, injected_state, caplog):
  _save(tmp_path, injected_state, steps=(16, 32)).close()
  victim = _largest_file(tmp_path / "32")
  with open(victim, "r+b") as f:
    f.truncate(os.path.getsize(victim) // 2)
  with caplog.at_level(logging.WARNING):
    restored = checkpoint.Checkpointer(str(tmp_path)).restore(optimizer=agent.optimizer)
  assert restored.step == 16
  assert any("unreadable" in r.getMessage() and str(tmp_path / "32") in r.getMessage() for r in caplog.records)
  assert _tree_equal(restored.params, injected_state.params)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_missing_file_or_flipped_bytes_are_detected(tmp_path, injected_state):
  _save(tmp_path, injected_state, steps=(16, 32, 48), max_to_keep=3).close()
  os.remove(tmp_path / "48" / "state" / "_METADATA")
  victim = _largest_file(tmp_path / "32")
  with open(victim, "r+b") as f:  # Same size, other bytes: only the checksum can tell.
    f.seek(os.path.getsize(victim) // 2)
    f.write(bytes(64))
  assert checkpoint.Checkpointer(str(tmp_path)).restore().step == 16


def test_all_corrupt_is_a_clear_error_naming_the_path(tmp_path, injected_state):
  _save(tmp_path, injected_state, steps=(16, 32)).close()
  for step in ("16", "32"):
    os.remove(tmp_path / step / "meta" / "metadata")
  with pytest.raises(checkpoint.CheckpointError, match="no readable checkpoint") as error:
    checkpoint.Checkpointer(str(tmp_path)).restore()
  assert str(tmp_path) in str(error.value) and str(tmp_path / "32") in str(error.value)


def test_set_aside_frees_the_step_number(tmp_path, injected_state):
  checkpointer = _save(tmp_path, injected_state, steps=(16, 32))
  checkpointer.set_aside([32])
  assert checkpointer.steps() == [16]
  checkpointer.save(32, state=injected_state, keys={}, loop={"frames": 32})
  checkpointer.close()
  assert checkpoint.Checkpointer(str(tmp_path)).steps() == [16, 32]
  assert os.path.isdir(tmp_path / "unreadable" / "32")


# -- reincarnation ----------------------------------------------------------------------------------------------


def _reincarnate_config(path, load="params", **network):
  config = _smoke_config()
  config.reincarnate.path, config.reincarnate.load = str(path), load
  config.replay.capacity = 400  # The saved replay's size (_replay()).
  config.network.update(network)
  return config


def test_reincarnated_agent_predicts_as_the_saved_one(tmp_path, agent, injected_state, fresh_state):
  _save(tmp_path / "checkpoints", injected_state, steps=(16, 32), replay=_replay()).close()
  obs = np.random.default_rng(2).integers(0, 256, (5, 84, 84, 4), dtype=np.uint8)
  apply = jax.jit(agent.network.apply)
  expected = apply(injected_state.params, obs)
  for path in (tmp_path, tmp_path / "checkpoints" / "16"):  # A workdir (its newest step) or one step.
    for load in checkpoint.LOADS:
      config = _reincarnate_config(path, load)
      restored = checkpoint.reincarnate(config, agent)  # The new config's agent: the same network.
      assert restored.step == (32 if path == tmp_path else 16)
      state = restored.train_state(fresh_state, agent.optimizer, load)
      np.testing.assert_array_equal(apply(state.params, obs), expected)
      assert jax.tree.structure(state.opt_state) == jax.tree.structure(injected_state.opt_state)
      assert int(state.num_updates) == (int(injected_state.num_updates) if load == "all" else 0)
      assert (restored.replay is not None) == (load in ("params+optimizer+replay", "all"))
      if load == "params":
        assert _tree_equal(state.target_params, injected_state.params)
        assert _tree_equal(state.opt_state, agent.optimizer.init(params_tree.trainable(injected_state.params)))


def test_reincarnation_mismatch_names_paths_and_shapes(tmp_path, injected_state):
  _save(tmp_path, injected_state).close()
  config = _reincarnate_config(tmp_path)
  with pytest.raises(checkpoint.CheckpointError, match="does not fit") as error:
    checkpoint.reincarnate(config, dqn.make_agent(config, num_actions=18))  # Another game's action set.
  message = str(error.value)
  assert "trainable/head/dense_1/linear/kernel: saved float32(24, 6), the new config's network expects" in message
  assert "frozen/plus/0/dense_1/linear/kernel: saved float32(16, 6)" in message  # (A shared output bias fits.)
  assert "expects float32(16, 18)" in message

  config = _reincarnate_config(tmp_path, width=0.5)  # Another encoder width.
  with pytest.raises(checkpoint.CheckpointError) as error:
    checkpoint.reincarnate(config, dqn.make_agent(config, num_actions=6))
  assert "trainable/encoder/conv_0/linear/kernel: saved float32(8, 8, 4, 8)" in str(error.value)

  config = _reincarnate_config(tmp_path, layer_norm=True)
  with pytest.raises(checkpoint.CheckpointError, match="conv_0/norm/scale: missing in the saved params"):
    checkpoint.reincarnate(config, dqn.make_agent(config, num_actions=6))


def test_reincarnation_errors_for_optimizer_and_replay(tmp_path, injected_state):
  _save(tmp_path, injected_state).close()  # No replay.
  config = _reincarnate_config(tmp_path, "params+optimizer")
  config.learner.optimizer = "adam_dopamine"
  with pytest.raises(checkpoint.CheckpointError, match="another optimizer"):
    checkpoint.reincarnate(config, dqn.make_agent(config, num_actions=6))
  config = _reincarnate_config(tmp_path, "params+optimizer+replay")
  with pytest.raises(checkpoint.CheckpointError, match="saved without one"):
    checkpoint.reincarnate(config, dqn.make_agent(config, num_actions=6))
  with pytest.raises(checkpoint.CheckpointError, match="not a workdir"):
    checkpoint.open_source(str(tmp_path / "16" / "state"))


def test_config_validates_checkpoint_and_reincarnate_fields(tmp_path):
  for field, value, match in (("checkpoint.period_frames", -1, "≥ 0"), ("checkpoint.max_to_keep", 0, "≥ 1"),
                              ("reincarnate.load", "everything", "allowed"),
                              ("reincarnate.path", str(tmp_path / "nope"), "no such directory")):
    config = _smoke_config()
    parent, name = field.split(".")
    config[parent][name] = value
    with pytest.raises(config_lib.ConfigError, match=f"config.{field}: .*{match}"):
      config_lib.validate(config)


# -- recorder truncation ------------------------------------------------------------------------------------------


def test_recorder_drops_rows_past_the_checkpoint(tmp_path):
  recorder = recorder_lib.Recorder(str(tmp_path), tensorboard=False)
  for frames in (0, 100, 200, 300):
    recorder.write(frames, "train", {"loss": 1.0})
    recorder.write_eval([{"game": "Pong", "variant": "v", "seed": 0, "frames": frames, "episode_return": 1.0,
                          "episode_frames": 4}])
  recorder.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"frames": 150, "kind": "tr')  # Cut by a kill.
  recorder_lib.Recorder(str(tmp_path), tensorboard=False, truncate_after_frames=200).close()
  assert [r["frames"] for r in recorder_lib.read_metrics(str(tmp_path))] == [0, 100, 200]
  assert [int(r["frames"]) for r in recorder_lib.read_eval(str(tmp_path))] == [0, 100, 200]
  recorder_lib.Recorder(str(tmp_path), tensorboard=False, truncate_after_frames=-1).close()
  assert recorder_lib.read_metrics(str(tmp_path)) == [] and recorder_lib.read_eval(str(tmp_path)) == []


# -- real runs, in subprocesses -----------------------------------------------------------------------------------

_RUN = ["--config.log.learning_curve=False", "--config.log.tensorboard=False"]


def _command(workdir, *overrides):
  return [sys.executable, "-m", "plasticity_rl.main", "--config=configs/dqn.py:smoke", f"--workdir={workdir}",
          *_RUN, *overrides]


def _run(env, workdir, *overrides, timeout=300):
  return subprocess.run(_command(workdir, *overrides), cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=timeout, check=False)


_INJECTED = ("--config.injection.frames=(2000,)",)


@pytest.fixture(scope="module")
def finished_run(run_env, tmp_path_factory):
  """A complete smoke run with an injection half-way (its checkpoints hold an injected agent)."""
  workdir = tmp_path_factory.mktemp("finished") / "run"
  result = _run(run_env, workdir, *_INJECTED)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


@pytest.mark.slow
def test_finished_run_rerun_prints_summary_without_training(finished_run, run_env):
  before = (finished_run / "metrics.jsonl").read_text()
  start = time.time()
  result = _run(run_env, finished_run, *_INJECTED)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "== Pong · baseline · seed 0 ==" in result.stdout and "frames 4,000" in result.stdout
  assert (finished_run / "metrics.jsonl").read_text() == before
  assert time.time() - start < 30
  result = _run(run_env, finished_run, "--config.seed=1")  # Another config: refused.
  assert result.returncode == 2 and "another config" in result.stderr


@pytest.mark.slow
def test_list_checkpoints(finished_run, tmp_path):
  script = [sys.executable, "-m", "plasticity_rl.list_checkpoints"]
  result = subprocess.run([*script, f"--workdir={finished_run}"], capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert "branches" in lines[1] and "status" in lines[1]
  assert len(lines) == 4 and all(line.rstrip().endswith("ok") for line in lines[2:])
  last = lines[-1].split()
  assert last[:3] == ["4,000", "4,000", "188"] and last[5] == "1" and last[-2] == "yes"  # 1 branch, replay.
  broken = tmp_path / "run"
  shutil.copytree(finished_run, broken)
  os.remove(broken / "checkpoints" / "4000" / "state" / "_METADATA")
  result = subprocess.run([*script, f"--workdir={broken}", "--quick"], capture_output=True, text=True, check=False)
  assert result.returncode == 1 and "unreadable: FileNotFoundError" in result.stdout.splitlines()[-1]


@pytest.mark.slow
def test_same_seed_same_losses(finished_run, run_env, tmp_path):
  """CPU runs are deterministic: envpool (sync, seeded) and XLA:CPU give bit-identical losses."""
  result = _run(run_env, tmp_path / "again", *_INJECTED)
  assert result.returncode == 0, result.stderr[-3000:]
  losses = [[r.get("loss") for r in recorder_lib.read_metrics(str(w), "train")] for w in (finished_run,
                                                                                          tmp_path / "again")]
  assert losses[0] == losses[1] and len([x for x in losses[0] if x is not None]) >= 3
  metas = [checkpoint.Checkpointer(str(w / "checkpoints"), read_only=True).read_meta(4000)
           for w in (finished_run, tmp_path / "again")]
  assert metas[0]["checksums"] == metas[1]["checksums"]  # Every param and optimizer statistic.


@pytest.mark.slow
def test_reincarnation_from_the_command_line(finished_run, run_env, tmp_path):
  workdir = tmp_path / "student"
  result = _run(run_env, workdir, f"--config.reincarnate.path={finished_run}", "--config.reincarnate.load=params",
                "--config.injection.frames=(0,)", "--config.total_frames=1600", "--config.eval.period_frames=1600",
                "--config.learner.replay_ratio=0.5")
  assert result.returncode == 0, result.stderr[-3000:]
  rows = recorder_lib.read_metrics(str(workdir))
  run = next(r for r in rows if r["kind"] == "run")
  assert run["reincarnated_from"] == str(finished_run / "checkpoints" / "4000") and run["params_frozen"] > 0
  event = next(r for r in rows if r["kind"] == "event")
  assert event["name"] == "injection" and event["frames"] == 16 and event["max_abs_dq"] == 0.0
  meta = checkpoint.Checkpointer(str(workdir / "checkpoints"), read_only=True).read_meta(1600)
  assert checkpoint.summarize(meta)["branches"] == 2  # The saved agent's injection and this run's.


def _listing(directory) -> set[str]:
  try:
    return set(os.listdir(directory))
  except FileNotFoundError:
    return set()


@pytest.mark.slow
def test_kill_and_resume_completes_with_the_uninterrupted_budget(run_env, tmp_path):
  """SIGKILL at random moments (one during a save), then SIGTERM, then run to the end."""
  overrides = ("--config.total_frames=6000", "--config.checkpoint.period_frames=496")
  config = _smoke_config()
  config.total_frames, config.checkpoint.period_frames = 6000, 496
  workdir, rng = tmp_path / "run", random.Random(0)
  checkpoints = workdir / "checkpoints"
  interruptions = [("kill", "progress"), ("kill", "saving"), ("kill", "progress"), ("term", "progress")]
  for how, when in interruptions:
    proc = subprocess.Popen(_command(workdir, *overrides), cwd=REPO, env=run_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    start_frames, before = testing.logged_frames(workdir), _listing(checkpoints)
    if when == "saving":  # Kill while a new step's temporary directory is being written.
      testing.wait_for(lambda: testing.logged_frames(workdir) > start_frames, proc)
      testing.wait_for(lambda: any("tmp" in name for name in _listing(checkpoints) - before), proc)
    else:
      testing.wait_for(lambda: testing.logged_frames(workdir) > start_frames + 500, proc)
      time.sleep(rng.uniform(0, 0.5))
    proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    if how == "term":
      assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
      assert "stopped by SIGTERM" in stderr
    if how == "term":
      steps = checkpoint.Checkpointer(str(checkpoints), read_only=True).steps()
      assert steps and steps[-1] == testing.logged_frames(workdir), stderr[-3000:]  # Saved where it stopped.
  result = subprocess.run(_command(workdir, *overrides), cwd=REPO, env=run_env, capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]

  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["frames"] == config.total_frames
  assert summary["updates"] == testing.budget_updates(config)
  resumes = recorder_lib.read_metrics(str(workdir), "resume")
  assert len(resumes) >= 3
  checkpointer = checkpoint.Checkpointer(str(checkpoints), read_only=True)
  assert checkpointer.steps()[-1] == config.total_frames
  for step in checkpointer.steps():
    checkpointer.restore_step(step)  # Every checkpoint left is readable.
  assert not [n for n in os.listdir(checkpoints) if not n.isdigit()], os.listdir(checkpoints)
  testing.check_run_logs(workdir, config)
  with open(workdir / "eval.csv", newline="") as f:
    assert len(list(csv.reader(f))) == 1 + config.eval.num_episodes * 3
