"""The device path (device_loop.py: K agent steps per jitted call) against the host path (train.py).

By construction the two differ only in the replay's random stream (device_replay.py); so with the same seed:
the envs, the frame stacks, the actions and the replay's contents are the same until the first update; the
first update is the agent's update on the batch the device replay drew; a stopped device-path run resumes
to the uninterrupted run's budget, and the same stop resumes the same way twice.
"""

import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_rl import checkpoint
from plasticity_rl import config as config_lib
from plasticity_rl import device_loop
from plasticity_rl import device_replay
from plasticity_rl import recorder as recorder_lib
from plasticity_rl import testing
from plasticity_rl import train
from plasticity_rl import workdir as workdir_lib
from plasticity_rl.agents import dqn
from plasticity_rl.envs import atari
from plasticity_rl.envs import xla_actor

TIMINGS = {"fps", "updates_per_s", "blocking_seconds", "seconds", "wall_seconds"}


def _smoke(**overrides):
  config = testing.configs_module("dqn").get_config("smoke")
  config.log.learning_curve = False
  config.log.tensorboard = False
  for field, value in overrides.items():
    section, _, name = field.rpartition(".")
    (config_lib.eval_field(config, section) if section else config)[name] = value
  return config


def _train(config, workdir) -> dict:
  config_lib.validate(config)
  workdir_lib.prepare_workdir(str(workdir), config)
  return train.train(config, str(workdir))


def _rows(workdir, before: int | None = None) -> list[dict]:
  rows = [{k: v for k, v in r.items() if k not in TIMINGS} for r in recorder_lib.read_metrics(str(workdir))
          if r["kind"] not in ("provenance", "resume")]
  return [r for r in rows if before is None or r["frames"] < before]


def _replay(workdir) -> dict:
  return checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True).restore().replay


def test_the_backend_resolves_and_what_it_cannot_run_is_refused_naming_the_field():
  assert device_loop.resolve_backend("auto") == "host" and device_loop.resolve_backend("device") == "device"
  for overrides, field in (({"loop.backend": "gpu"}, "config.loop.backend"),
                           ({"loop.chunk_steps": 64}, "config.loop.chunk_steps"),
                           ({"loop.backend": "device", "loop.chunk_steps": 0}, "config.loop.chunk_steps"),
                           ({"loop.backend": "device", "num_seeds": 2, "seed_batching": "vmap"},
                            "config.seed_batching"),
                           ({"loop.backend": "device", "expansion.enabled": True}, "config.loop.backend")):
    with pytest.raises(config_lib.ConfigError, match=field.replace(".", r"\.")) as error:
      config_lib.validate(_smoke(**overrides))
    assert "\n" not in str(error.value)
  config_lib.validate(_smoke(**{"loop.backend": "device", "loop.chunk_steps": 64}))


@pytest.mark.slow
@pytest.mark.parametrize("envs", ["fake", "envpool"])
def test_the_device_path_steps_acts_and_stores_as_the_host_path_until_the_first_update(envs, tmp_path,
                                                                                      monkeypatch):
  if envs == "fake":
    monkeypatch.setenv(atari.FAKE_ENVPOOL_ENV, "1")
  else:
    monkeypatch.delenv(atari.FAKE_ENVPOOL_ENV, raising=False)
  starts = 2_000
  summaries, rows, replays = {}, {}, {}
  for backend in ("host", "device"):
    config = _smoke(**{"loop.backend": backend, "replay.learning_starts_frames": starts, "total_frames": 2_400,
                       "eval.period_frames": 2_400, "metrics.period_frames": 0})
    summaries[backend] = _train(config, tmp_path / backend)
    rows[backend] = [r for r in _rows(tmp_path / backend, before=starts + 1)
                     if r["frames"] < starts or r["kind"] == "episode"]  # The train row at `starts`: a loss.
    replays[backend] = _replay(tmp_path / backend)
  per_step = config.env.num_envs * atari.FRAME_SKIP
  acted_alike = starts // per_step  # Entries 0 … acted_alike − 1: actions of the initial params, frames of them.
  for key in ("frames", "actions", "rewards", "flags"):
    np.testing.assert_array_equal(replays["device"][key][:, :acted_alike + 1 if key != "actions" else acted_alike],
                                  replays["host"][key][:, :acted_alike + 1 if key != "actions" else acted_alike],
                                  err_msg=key)
  assert replays["device"]["num_added"] == replays["host"]["num_added"] == config.total_frames // per_step
  assert [r for r in rows["device"] if r["kind"] == "episode"], "no training episode ended: the test sees nothing"
  assert rows["device"] == rows["host"]  # Episodes, train rows (ε, updates, losses of no update), the run row.
  for key in ("frames", "updates", "episodes"):
    assert summaries["device"][key] == summaries["host"][key], key
  assert summaries["device"]["updates"] == testing.budget_updates(config) > 0


def test_a_chunks_update_is_the_agents_update_on_the_batch_the_device_replay_drew(fake_envpool):
  config = _smoke(**{"loop.backend": "device"})
  envs = atari.make_envs(config.game, config.env.protocol, config.env.num_envs, seed=3,
                         max_episode_frames=config.env.max_episode_frames)
  agent = dqn.make_agent(config, envs.action_space.n)
  state = agent.init(jax.random.key(0))
  actor = xla_actor.XlaActor(envs, config.env.protocol)
  actor_state, step = actor.reset()
  replay = device_loop.DeviceReplayBuffer(config.replay.capacity, config.env.num_envs, n_step=config.replay.n_step,
                                          gamma=config.learner.gamma, seed=0)
  info_zeros = device_loop._info_zeros(agent, state, replay.replay, config.learner.batch_size)
  carry = device_loop.Carry(state=dqn.owned(state), act_key=jax.random.key(1), actor=actor_state, step=step,
                            stack=jnp.zeros_like(actor_state.stack), replay=replay.replay, replay_key=replay.key,
                            info_sum=info_zeros)
  k = 8
  fill = np.zeros(k, np.int32)
  carry, _ = device_loop.run_chunk(agent, actor, config.learner.batch_size, 1.0, carry, np.full(k, 1.0, np.float32),
                                   fill, np.ones(k, bool))
  before = jax.tree.map(jnp.copy, carry)
  carry, _ = device_loop.run_chunk(agent, actor, config.learner.batch_size, 1.0, carry, np.full(k, 0.5, np.float32),
                                   np.array([1] + [0] * (k - 1), np.int32), np.array([True] + [False] * (k - 1)))
  # What the chunk's one step did, by hand: act on the stack, store the received step, one update.
  actions, act_key = agent.act(agent.acting_params(before.state), before.actor.stack, before.act_key, np.float32(0.5))
  stored = device_replay.add(before.replay, before.step.frame, actions.astype(jnp.uint8),
                             jnp.clip(before.step.reward, -1, 1), before.step.terminal, before.step.last,
                             before.step.first)
  replay_key, draw = jax.random.split(before.replay_key)
  expected, info = agent.update(before.state, device_replay.sample(stored, draw, config.learner.batch_size))
  assert jax.random.key_data(carry.act_key).tolist() == jax.random.key_data(act_key).tolist()
  assert jax.random.key_data(carry.replay_key).tolist() == jax.random.key_data(replay_key).tolist()
  np.testing.assert_array_equal(carry.replay.frames, stored.frames)
  np.testing.assert_array_equal(carry.replay.actions, stored.actions)
  assert int(carry.state.num_updates) == 1
  for got, want in zip(jax.tree.leaves(carry.state.params), jax.tree.leaves(expected.params)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(carry.info_sum["loss"], info["loss"], rtol=1e-6)
  assert not np.array_equal(jax.tree.leaves(carry.state.params)[0], jax.tree.leaves(before.state.params)[0])


def _stop_at(monkeypatch, frames: int) -> None:
  """SIGTERM to this process once the train row at `frames` is written (the loop then saves and stops)."""
  original = recorder_lib.Recorder.write

  def write(self, at, kind, row):
    original(self, at, kind, row)
    if kind == "train" and at == frames:
      os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(recorder_lib.Recorder, "write", write)


@pytest.mark.slow
def test_a_stopped_device_run_resumes_to_the_uninterrupted_budget_and_alike_each_time(tmp_path, fake_envpool,
                                                                                     monkeypatch):
  config = _smoke(**{"loop.backend": "device", "loop.chunk_steps": 32})
  whole = _train(config, tmp_path / "whole")
  stop = 2_000
  resumed = []
  for name in ("stopped_a", "stopped_b"):
    with monkeypatch.context() as patch:
      _stop_at(patch, stop)
      with pytest.raises(train.Preempted):
        _train(config, tmp_path / name)
    assert checkpoint.Checkpointer(str(tmp_path / name / "checkpoints"), read_only=True).steps()[-1] == stop
    assert _rows(tmp_path / name, before=stop) == _rows(tmp_path / "whole", before=stop)
    resumed.append(train.train(config, str(tmp_path / name)))
  for summary in resumed:
    assert (summary["frames"], summary["updates"]) == (whole["frames"], whole["updates"])
    assert summary["train_flops"] == whole["train_flops"] > 0  # The counter resumes with the checkpoint.
    assert whole["updates"] == testing.budget_updates(config)
  assert _rows(tmp_path / "stopped_a") == _rows(tmp_path / "stopped_b")
  assert [r["kind"] for r in recorder_lib.read_metrics(str(tmp_path / "stopped_a"), "resume")] == ["resume"]
  testing.check_run_logs(tmp_path / "stopped_a", config)


@pytest.mark.slow
def test_seed_1_of_a_two_seed_device_run_with_an_injection_is_the_single_device_run_with_seed_1(tmp_path,
                                                                                             fake_envpool):
  """The seeds' chunks run one after another on the device path, each with its own envs, replay and keys; a
  scheduled injection between chunks changes both seeds' structures (a recompile of the chunk)."""
  from plasticity_rl import multi_seed  # pylint: disable=g-import-not-at-top
  overrides = {"loop.backend": "device", "injection.frames": (2_000,), "metrics.period_frames": 0}
  two = _smoke(num_seeds=2, **overrides)
  config_lib.validate(two)
  workdir_lib.prepare_workdir(str(tmp_path / "two"), two)
  multi_seed.train_seeds(two, str(tmp_path / "two"))
  alone = _smoke(seed=1, **overrides)
  _train(alone, tmp_path / "alone")
  rows = [{k: v for k, v in r.items() if k not in ("num_seeds", "seed_batching")}
          for r in _rows(multi_seed.seed_workdir(str(tmp_path / "two"), 1))]
  assert any(r["kind"] == "event" and r["name"] == "injection" and r["max_abs_dq"] == 0.0 for r in rows)
  assert rows == _rows(tmp_path / "alone")
  assert recorder_lib.read_eval(multi_seed.seed_workdir(str(tmp_path / "two"), 1)) == recorder_lib.read_eval(
      str(tmp_path / "alone"))


@pytest.mark.slow
def test_either_path_reincarnates_the_others_saved_agent_with_its_replay(tmp_path, fake_envpool):
  for saved, new in (("device", "host"), ("host", "device")):
    _train(_smoke(**{"loop.backend": saved, "total_frames": 2_000, "eval.period_frames": 2_000}), tmp_path / saved)
    config = _smoke(**{"loop.backend": new, "reincarnate.path": str(tmp_path / saved),
                       "reincarnate.load": "params+optimizer+replay"})
    summary = _train(config, tmp_path / f"{new}_from_{saved}")
    run = next(r for r in recorder_lib.read_metrics(str(tmp_path / f"{new}_from_{saved}"), "run"))
    assert run["reincarnate_load"] == "params+optimizer+replay" and summary["frames"] == config.total_frames
    source, continued = _replay(tmp_path / saved), _replay(tmp_path / f"{new}_from_{saved}")
    per_step = config.env.num_envs * atari.FRAME_SKIP  # The saved replay goes on filling.
    assert continued["num_added"] == source["num_added"] + config.total_frames // per_step
    np.testing.assert_array_equal(continued["frames"][:, :source["num_added"]], source["frames"])
