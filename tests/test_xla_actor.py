"""envs/xla_actor.py: the XLA actor (jitted, and in lax.scan) gives what AtariStepper + FrameStacker + Episodes give.

Each comparison steps two pools made alike (same game, protocol, seed) with the same actions: one through the host
actor, one through XlaActor; every Step field, every stacked observation and every finished episode must be the
same, bit for bit (dtypes included). One real-envpool test (Breakout, atari100k: life-loss terminals and time
limits); the rest on the fake envpool.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_rl import train
from plasticity_rl.envs import atari
from plasticity_rl.envs import xla_actor


def _actions(envs, steps: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, envs.action_space.n, (steps, envs.num_envs)).astype(np.int32)


def _host(envs, protocol: str, actions: np.ndarray, stack_size: int = 4):
  """The host actor, as the loop runs it: (EnvSteps, stacked observations, finished episodes per step, and the
  running episodes' (returns, frames))."""
  stepper = atari.AtariStepper(envs, protocol)
  step = stepper.reset()
  stacker, episodes = atari.FrameStacker(envs.num_envs, stack_size), train.Episodes.zeros(envs.num_envs)
  steps, stacks, finished = [step], [stacker.push(step.frame, step.first).copy()], []
  for a in actions:
    step = stepper.step(a)
    finished.append(episodes.track(step))
    steps.append(step)
    stacks.append(stacker.push(step.frame, step.first).copy())
  return steps, stacks, finished, (episodes.returns, episodes.frames)


def _device(envs, protocol: str, actions: np.ndarray, stack_size: int = 4, scan: bool = False):
  """XlaActor, step by step under jax.jit or as one jitted lax.scan over `actions`: the same as `_host` gives."""
  actor = xla_actor.XlaActor(envs, protocol, stack_size)
  state, step = actor.reset()
  steps, stacks = [jax.device_get(step)], [np.asarray(state.stack)]
  if scan:
    def body(state, a):
      state, step, finished = actor.step(state, a)
      return state, (step, state.stack, finished)

    state, (step, stack, finished) = jax.jit(lambda s, a: jax.lax.scan(body, s, a))(state, jnp.asarray(actions))
    step, stack, finished = jax.device_get((step, stack, finished))
    steps += [jax.tree.map(lambda x, t=t: x[t], step) for t in range(len(actions))]
    stacks += list(stack)
    finished = [xla_actor.finished_episodes(jax.tree.map(lambda x, t=t: x[t], finished))
                for t in range(len(actions))]
  else:
    step_fn, finished = jax.jit(actor.step), []
    for a in actions:
      state, step, done = step_fn(state, jnp.asarray(a))
      steps.append(jax.device_get(step))
      stacks.append(np.asarray(state.stack))
      finished.append(xla_actor.finished_episodes(done))
  state = jax.device_get(state)
  return steps, stacks, finished, (state.episode_return, state.episode_frames)


def _assert_same(host, device):
  (h_steps, h_stacks, h_finished, h_running), (d_steps, d_stacks, d_finished, d_running) = host, device
  assert len(h_steps) == len(d_steps)
  for t, (h, d) in enumerate(zip(h_steps, d_steps)):
    for field in atari.EnvStep._fields:
      h_value, d_value = np.asarray(getattr(h, field)), np.asarray(getattr(d, field))
      assert h_value.dtype == d_value.dtype, (t, field, h_value.dtype, d_value.dtype)
      np.testing.assert_array_equal(d_value, h_value, err_msg=f"step {t}, {field}")
    np.testing.assert_array_equal(d_stacks[t], h_stacks[t], err_msg=f"step {t}, stack")
    assert d_stacks[t].dtype == h_stacks[t].dtype
  assert d_finished == h_finished
  for h, d in zip(h_running, d_running):  # The running episodes too.
    np.testing.assert_array_equal(d, h)


def _kinds(steps):
  """Counts of life-loss terminals, game overs and time limits in a run."""
  terminal, last = np.stack([s.terminal for s in steps]), np.stack([s.last for s in steps])
  return int((terminal & ~last).sum()), int((terminal & last).sum()), int((last & ~terminal).sum())


def test_real_envpool_breakout_atari100k_jit_and_scan_equal_the_host_actor():
  """Breakout under atari100k (life losses are terminals), 100-step episodes: 320 jitted steps, then a scan."""
  def make():
    return atari.make_envs("Breakout", "atari100k", num_envs=2, seed=3, max_episode_frames=400)

  host_envs = make()
  actions = _actions(host_envs, 320)
  host = _host(host_envs, "atari100k", actions)
  life_losses, _, time_limits = _kinds(host[0])
  assert life_losses > 0 and time_limits > 0 and host[2].count([]) < len(host[2])
  _assert_same(host, _device(make(), "atari100k", actions))
  _assert_same(host, _device(make(), "atari100k", actions, scan=True))


@pytest.mark.parametrize("game, protocol, num_envs, stack_size", [
    ("Breakout", "dqn_zoo", 3, 4),
    ("Pong", "machado", 2, 4),
    ("Qbert", "atari100k", 2, 2),
    ("Seaquest", "dopamine", 1, 4),
])
@pytest.mark.parametrize("scan", [False, True], ids=["jit", "scan"])
def test_fake_equals_the_host_actor(fake_envpool, game, protocol, num_envs, stack_size, scan):
  """Games with and without lives, sticky actions or not, life-loss terminals or not; 120-step episodes."""
  del fake_envpool
  make = lambda: atari.make_envs(game, protocol, num_envs=num_envs, seed=1, max_episode_frames=480)
  host_envs = make()
  actions = _actions(host_envs, 300, seed=2)
  host = _host(host_envs, protocol, actions, stack_size)
  life_losses, game_overs, time_limits = _kinds(host[0])
  assert game_overs > 0 and time_limits > 0 and (life_losses > 0) == (protocol in ("dqn_zoo", "atari100k"))
  _assert_same(host, _device(make(), protocol, actions, stack_size, scan=scan))


def test_game_over_on_the_cap_step_is_terminal_on_both(fake_envpool):
  """truncated with info["terminated"] = 1 (a game over on the time limit's step): terminal and last on both."""
  del fake_envpool
  runs = []
  for device in (False, True):
    envs = atari.make_envs("Pong", "machado", num_envs=2, seed=0, max_episode_frames=4 * 10)

    def reset(envs=envs, reset=envs.reset):
      out = reset()
      envs._game_steps[:] = 10  # pylint: disable=protected-access  (the first games end on the cap's step)
      return out

    envs.reset = reset
    actions = _actions(envs, 12)
    runs.append(_device(envs, "machado", actions) if device else _host(envs, "machado", actions))
  _assert_same(*runs)
  assert runs[0][0][10].terminal.all() and runs[0][0][10].last.all() and runs[0][0][11].first.all()


def test_rows_come_back_in_env_id_order(fake_envpool):
  """A pool that returns its rows reversed (env_id 2, 1, 0): both actors reorder them; the same as an ordered one."""
  del fake_envpool
  make = lambda: atari.make_envs("Breakout", "dqn_zoo", num_envs=3, seed=4, max_episode_frames=320)
  reversed_envs = make()
  recv = reversed_envs.recv

  def reversed_recv():
    obs, reward, terminated, truncated, info = recv()
    flip = lambda x: x[::-1].copy()
    return (flip(obs), flip(reward), flip(terminated), flip(truncated),
            {k: ({"env_id": flip(v["env_id"])} if isinstance(v, dict) else flip(v)) for k, v in info.items()})

  reversed_envs.recv = reversed_recv
  actions = _actions(reversed_envs, 120)
  ordered = _host(make(), "dqn_zoo", actions)
  _assert_same(ordered, _device(reversed_envs, "dqn_zoo", actions))
  reversed_envs = make()
  recv = reversed_envs.recv
  reversed_envs.recv = reversed_recv
  _assert_same(ordered, _host(reversed_envs, "dqn_zoo", actions))


def test_fake_xla_equals_the_fake_send_recv(fake_envpool):
  """The fake's xla() step (jitted, and in a scan) returns what its send/recv return, field by field."""
  del fake_envpool
  make = lambda: atari.make_envs("Breakout", "dqn_zoo", num_envs=2, seed=0, max_episode_frames=160)
  host_envs = make()
  actions = _actions(host_envs, 60)
  host_envs.reset()
  expected = [host_envs.step(a) for a in actions]
  for scan in (False, True):
    envs = make()
    handle, _, _, step = envs.xla()
    envs.reset()
    if scan:
      _, outs = jax.jit(lambda h, a: jax.lax.scan(lambda h, a: step(h, a), h, a))(handle, jnp.asarray(actions))
      got = [jax.tree.map(lambda x, t=t: np.asarray(x[t]), outs) for t in range(len(actions))]
    else:
      step_fn, got, h = jax.jit(step), [], handle
      for a in actions:
        h, out = step_fn(h, jnp.asarray(a))
        got.append(jax.device_get(out))
      np.testing.assert_array_equal(h, handle)
    for t, (e, g) in enumerate(zip(expected, got)):
      e_leaves, e_tree = jax.tree.flatten(e)
      g_leaves, g_tree = jax.tree.flatten(g)
      assert e_tree == g_tree, t
      for x, y in zip(e_leaves, g_leaves):
        assert np.asarray(x).dtype == np.asarray(y).dtype, t
        np.testing.assert_array_equal(y, x, err_msg=f"step {t}")


def test_push_frame_is_frame_stackers_push():
  rng = np.random.default_rng(0)
  stacker, stack = atari.FrameStacker(num_envs=3, stack_size=3, frame_shape=(2, 2)), jnp.zeros((3, 2, 2, 3), jnp.uint8)
  for _ in range(12):
    frame, first = rng.integers(0, 256, (3, 2, 2)).astype(np.uint8), rng.random(3) < 0.3
    stack = xla_actor.push_frame(stack, jnp.asarray(frame), jnp.asarray(first))
    np.testing.assert_array_equal(stack, stacker.push(frame, first))
