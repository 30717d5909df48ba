"""Tests for plasticity_rl.envs.atari on real envpool games: presets, names, flags, frame stacking."""

import numpy as np
import pytest

from plasticity_rl.envs import atari


@pytest.mark.parametrize("protocol, num_actions, sticky, noop_max", [
    ("machado", 18, 0.25, 1),
    ("dqn_zoo", 6, 0.0, 30),
])
def test_protocol_presets_configure_envpool(protocol, num_actions, sticky, noop_max):
  envs = atari.make_envs("Pong", protocol, num_envs=2, seed=0)
  config = envs.spec.config
  assert envs.action_space.n == num_actions
  assert config.repeat_action_probability == pytest.approx(sticky)
  assert config.noop_max == noop_max
  assert config.full_action_space == (protocol == "machado")
  assert not config.episodic_life  # Life loss is a learning signal only, never a reset.
  assert not config.use_fire_reset  # Neither protocol presses FIRE at reset (envpool's default does).
  assert not config.reward_clip  # Raw game scores; the loop clips for learning.
  assert config.max_episode_steps == 108_000 // 4
  assert (config.frame_skip, config.stack_num, config.img_height, config.img_width) == (4, 1, 84, 84)
  assert config.gray_scale
  obs, info = envs.reset()
  assert obs.shape == (2, 1, 84, 84) and obs.dtype == np.uint8
  assert atari.num_actions("Pong", protocol) == num_actions


def test_max_episode_frames_sets_the_step_cap():
  envs = atari.make_envs("Breakout", "dqn_zoo", num_envs=1, seed=0, max_episode_frames=27_000)
  assert envs.spec.config.max_episode_steps == 27_000 // 4


@pytest.mark.parametrize("name", ["Pong", "Pong-v5", "pong", " PONG-v5 "])
def test_resolve_game_accepts_spellings(name):
  assert atari.resolve_game(name) == "Pong"


@pytest.mark.parametrize("name, expected", [("space_invaders", "SpaceInvaders"), ("MontezumaRevenge-v5",
                                                                                  "MontezumaRevenge"),
                                            ("AirRaid", "AirRaid"), ("air_raid", "AirRaid"),
                                            ("Pitfall2-v5", "Pitfall2")])
def test_resolve_game_beyond_the_simple_spellings(name, expected):
  assert atari.resolve_game(name) == expected


def test_resolve_game_rejects_unknown_names_naming_alternatives():
  with pytest.raises(ValueError) as error:
    atari.resolve_game("Pongg")
  message = str(error.value)
  assert "'Pongg'" in message
  assert "did you mean 'Pong'" in message
  for alternative in ("Breakout", "MontezumaRevenge", "AirRaid"):
    assert alternative in message


def _run_until_game_over(game: str, protocol: str, num_envs: int = 2, max_steps: int = 3_000):
  """Random actions until some env's game ends; returns the EnvSteps (reset included) and the lives."""
  envs = atari.make_envs(game, protocol, num_envs=num_envs, seed=0)
  stepper = atari.AtariStepper(envs, protocol)
  steps = [stepper.reset()]
  rng = np.random.default_rng(0)
  while not (steps[-1].last & steps[-1].terminal).any():
    assert len(steps) < max_steps, "no game over within the step budget"
    steps.append(stepper.step(rng.integers(0, envs.action_space.n, num_envs)))
  steps.append(stepper.step(rng.integers(0, envs.action_space.n, num_envs)))  # The step after the last.
  return steps


def _life_losses(steps):
  """(step index, env) of every step on which an env lost a life but its game went on."""
  return [(t, e) for t in range(1, len(steps)) for e in range(len(steps[t].lives))
          if steps[t].lives[e] < steps[t - 1].lives[e] and not steps[t].first[e] and not steps[t].last[e]]


@pytest.mark.parametrize("protocol, life_loss_is_terminal", [("dqn_zoo", True), ("machado", False)])
def test_life_loss_and_game_over_flags(protocol, life_loss_is_terminal):
  steps = _run_until_game_over("Breakout", protocol)
  assert steps[0].first.all() and not steps[0].last.any() and not steps[0].terminal.any()
  assert (steps[0].lives == 5).all()

  losses = _life_losses(steps)
  assert losses, "no life was lost before the game over"
  for t, e in losses:
    assert steps[t].terminal[e] == life_loss_is_terminal, (t, e)
    assert not steps[t].last[e] and not steps[t].first[e]

  # Without a life lost or a game over, a step never cuts bootstrapping.
  lost = {(t, e) for t, e in losses}
  for t in range(1, len(steps)):
    for e in range(len(steps[t].lives)):
      if (t, e) not in lost and not steps[t].last[e]:
        assert not steps[t].terminal[e], (t, e)

  # The game over is terminal and last; the env starts a fresh episode on the next step.
  over, after = steps[-2], steps[-1]
  ended = np.flatnonzero(over.last & over.terminal)
  assert (over.lives[ended] == 0).all()
  assert after.first[ended].all()
  assert not after.last[ended].any() and not after.terminal[ended].any()
  assert (after.reward[ended] == 0).all()
  assert (after.lives[ended] == 5).all()
  # `first` is set exactly on the steps after a `last`.
  for t in range(1, len(steps)):
    np.testing.assert_array_equal(steps[t].first, steps[t - 1].last)


@pytest.mark.parametrize("protocol", ["dqn_zoo", "machado"])
def test_time_limit_is_last_but_not_terminal(protocol):
  envs = atari.make_envs("Pong", protocol, num_envs=2, seed=0, max_episode_frames=40)  # 10 agent steps.
  stepper = atari.AtariStepper(envs, protocol)
  step = stepper.reset()
  flags = []
  for _ in range(12):
    step = stepper.step(np.zeros(2, np.int64))
    flags.append((step.first.copy(), step.last.copy(), step.terminal.copy()))
    assert step.frame.shape == (2, 84, 84) and step.frame.dtype == np.uint8
    assert step.reward.dtype == np.float32
  for t, (first, last, terminal) in enumerate(flags, start=1):
    assert last.all() == (t == 10) and last.any() == (t == 10), t
    assert first.all() == (t == 11) and first.any() == (t == 11), t
    assert not terminal.any(), t  # A time limit is no terminal: the learner bootstraps through it.


def test_frame_stacker_shifts_and_zeroes_history_on_first():
  stacker = atari.FrameStacker(num_envs=2, stack_size=4, frame_shape=(2, 2))
  frame = lambda a, b: np.stack([np.full((2, 2), a, np.uint8), np.full((2, 2), b, np.uint8)])
  newest_first = lambda stack, e: [int(stack[e, 0, 0, k]) for k in range(4)]

  stack = stacker.push(frame(1, 11), np.array([True, True])).copy()
  assert stack.shape == (2, 2, 2, 4) and stack.dtype == np.uint8
  assert newest_first(stack, 0) == [0, 0, 0, 1] and newest_first(stack, 1) == [0, 0, 0, 11]
  for a, b in ((2, 12), (3, 13), (4, 14), (5, 15)):
    stack = stacker.push(frame(a, b), np.array([False, False])).copy()
  assert newest_first(stack, 0) == [2, 3, 4, 5] and newest_first(stack, 1) == [12, 13, 14, 15]

  # Env 0 starts an episode: its history is zeros; env 1 goes on.
  stack = stacker.push(frame(6, 16), np.array([True, False])).copy()
  assert newest_first(stack, 0) == [0, 0, 0, 6]
  assert newest_first(stack, 1) == [13, 14, 15, 16]
  stack = stacker.push(frame(7, 17), np.array([False, False])).copy()
  assert newest_first(stack, 0) == [0, 0, 6, 7]
  assert (stack[0, ..., :2] == 0).all() and (stack[0, ..., 3] == 7).all()


def test_frame_stacker_with_a_real_env():
  envs = atari.make_envs("Pong", "dqn_zoo", num_envs=2, seed=0)
  stepper = atari.AtariStepper(envs, "dqn_zoo")
  stacker = atari.FrameStacker(2)
  step = stepper.reset()
  obs = stacker.push(step.frame, step.first)
  assert obs.shape == (2, 84, 84, 4) and obs.dtype == np.uint8
  assert (obs[..., :3] == 0).all()
  np.testing.assert_array_equal(obs[..., 3], step.frame)
  frames = [step.frame]
  for _ in range(4):
    step = stepper.step(np.zeros(2, np.int64))
    frames.append(step.frame)
    obs = stacker.push(step.frame, step.first)
  np.testing.assert_array_equal(obs, np.stack(frames[-4:], axis=-1))


class _ScriptedPool:
  """An envpool-like synchronous pool of one env whose recv() replays scripted (terminated, truncated, info)."""

  def __init__(self, script):
    self.script, self.t = script, 0

  def reset(self):
    return np.zeros((1, 1, 84, 84), np.uint8), {"lives": np.array([3]), "env_id": np.array([0])}

  def send(self, actions):
    del actions

  def recv(self):
    terminated, truncated, game_over, lives = self.script[self.t]
    self.t += 1
    info = {"lives": np.array([lives]), "env_id": np.array([0]), "terminated": np.array([game_over])}
    return (np.zeros((1, 1, 84, 84), np.uint8), np.zeros(1), np.array([terminated]), np.array([truncated]), info)


def test_game_over_on_the_cap_step_is_terminal():
  # envpool, when the game ends on the episode cap's last step: terminated=False, truncated=True,
  # info["terminated"]=1 (checked on real envpool: a plain time limit has info["terminated"]=0).
  script = [(False, False, 0, 3), (False, True, 1, 0), (False, False, 0, 3), (False, True, 0, 3)]
  stepper = atari.AtariStepper(_ScriptedPool(script), "machado")
  stepper.reset()
  steps = [stepper.step(np.zeros(1, np.int64)) for _ in script]
  assert not steps[0].terminal[0] and not steps[0].last[0]
  assert steps[1].terminal[0] and steps[1].last[0]  # A game over: no bootstrapping from it.
  assert steps[2].first[0]
  assert steps[3].last[0] and not steps[3].terminal[0]  # A plain time limit: bootstrapped through.


def test_real_time_limit_reports_no_game_over():
  envs = atari.make_envs("Pong", "dqn_zoo", num_envs=1, seed=0, max_episode_frames=40)
  envs.reset()
  for _ in range(10):
    *_, truncated, info = envs.step(np.zeros(1, np.int64))
  assert truncated[0] and not info["terminated"][0]


def test_atari100k_protocol_is_dopamines():
  envs = atari.make_envs("Boxing", "atari100k", num_envs=1, seed=0)
  config = envs.spec.config
  assert config.repeat_action_probability == 0.0  # DrQ_eps.gin: sticky_actions = False.
  assert not config.full_action_space  # The NoFrameskip-v4 games: minimal action set.
  assert config.noop_max == 1  # Dopamine's AtariPreprocessing has no no-op starts.
  assert config.max_episode_steps == 27_000  # max_steps_per_episode, from max_episode_frames = 108,000.
  assert atari.PROTOCOLS["atari100k"].life_loss_discount  # terminal_on_life_loss = True.
