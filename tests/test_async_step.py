"""AtariStepper.send/recv (the loop's overlap of env steps and updates) gives exactly what step gives."""

import numpy as np
import pytest

from plasticity_rl.envs import atari


def _steppers(game: str = "Breakout", num_envs: int = 4, seed: int = 3, max_episode_frames: int = 400):
  """Two steppers on identically seeded pools, with short episodes so that resets happen."""
  return [atari.AtariStepper(atari.make_envs(game, "dqn_zoo", num_envs, seed, max_episode_frames), "dqn_zoo")
          for _ in range(2)]


def _assert_same(a: atari.EnvStep, b: atari.EnvStep):
  for name, x, y in zip(atari.EnvStep._fields, a, b):
    np.testing.assert_array_equal(x, y, err_msg=name)
    assert x.dtype == y.dtype, name


def test_send_then_recv_equals_step_across_episode_ends():
  stepping, sending = _steppers()
  _assert_same(stepping.reset(), sending.reset())
  rng = np.random.default_rng(0)
  lasts = 0
  for _ in range(250):
    actions = rng.integers(0, 4, 4)
    a = stepping.step(actions)
    sending.send(actions)
    actions[:] = 0  # The caller may reuse its array once send returned.
    b = sending.recv()
    _assert_same(a, b)
    lasts += int(a.last.sum())
  assert lasts > 0  # Episodes ended (and restarted) within the run.


class _ShuffledPool:
  """An envpool stand-in whose recv returns the rows of a real pool in a shuffled env_id order."""

  def __init__(self, envs, seed: int = 0):
    self.envs, self.rng = envs, np.random.default_rng(seed)

  def reset(self):
    return self.envs.reset()

  def send(self, actions):
    self.envs.send(actions)

  def recv(self):
    obs, reward, terminated, truncated, info = self.envs.recv()
    order = self.rng.permutation(obs.shape[0])
    info = {**info, "env_id": info["env_id"][order], "lives": info["lives"][order]}
    return obs[order], reward[order], terminated[order], truncated[order], info


def test_recv_puts_rows_in_env_id_order():
  stepping, sending = _steppers()
  sending.envs = _ShuffledPool(sending.envs)
  _assert_same(stepping.reset(), sending.reset())
  rng = np.random.default_rng(1)
  for _ in range(150):
    actions = rng.integers(0, 4, 4)
    sending.send(actions)
    _assert_same(stepping.step(actions), sending.recv())


def test_one_step_in_flight_at_a_time():
  stepper, _ = _steppers(num_envs=2)
  stepper.reset()
  with pytest.raises(RuntimeError, match="without send"):
    stepper.recv()
  stepper.send(np.zeros(2, np.int64))
  with pytest.raises(RuntimeError, match="twice"):
    stepper.send(np.zeros(2, np.int64))
  assert stepper.recv().frame.shape == (2, 84, 84)


def test_a_partial_batch_is_refused():
  envs = atari.make_envs("Pong", "dqn_zoo", num_envs=4, seed=0)
  stepper = atari.AtariStepper(envs, "dqn_zoo")
  stepper.reset()

  class _Partial(_ShuffledPool):
    def recv(self):
      obs, reward, terminated, truncated, info = self.envs.recv()
      info = {**info, "env_id": info["env_id"][:2], "lives": info["lives"][:2]}
      return obs[:2], reward[:2], terminated[:2], truncated[:2], info

  stepper.envs = _Partial(envs)
  stepper.send(np.zeros(4, np.int64))
  with pytest.raises(RuntimeError, match="batch_size == num_envs"):
    stepper.recv()
