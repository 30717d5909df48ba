"""envpool Atari: game names, the two evaluation-protocol presets, the env factory.

Each agent step is `frame_skip` = 4 emulator frames (max-pooled over the last
two), grayscale 84×84. Envs are made with `stack_num=1`: the actor stacks frames
itself (`FrameStacker`), exactly as the replay rebuilds them, so that what the
agent sees when acting and when learning is the same array.

Presets (see docs/protocols.md and docs/reference/PROTOCOLS.md):
- `machado` (Machado et al. 2018): sticky actions p=0.25, full action set,
  no life-loss signal, no no-op starts, 108k-frame cap.
- `dqn_zoo` (DQN Zoo / Nature): 1–30 no-op starts, minimal action set, discount
  0 on life loss (the game is not reset), no sticky actions, 108k-frame cap.
- `atari100k` (Dopamine's Atari-100k agents, dopamine/labs/atari_100k/configs/*.gin
  and discrete_domains/atari_lib.py): no sticky actions (`sticky_actions = False`:
  the `NoFrameskip-v4` games), minimal action set, life loss terminal for learning
  (`terminal_on_life_loss = True`; the game goes on), no no-op starts; episodes of
  27,000 agent steps (`max_steps_per_episode`) come from the config's
  `max_episode_frames` = 108,000.
  Not yet matched: Dopamine's Atari-100k runner (labs/atari_100k/eval_run_experiment.py,
  max_noops=30) also plays 0–29 no-op frames after every reset (docs/reproduction.md).
- `dopamine` (Dopamine's Atari agents, e.g. dopamine/jax/agents/dqn/configs/dqn.gin
  and discrete_domains/atari_lib.py): sticky actions p=0.25 (`sticky_actions =
  True`: the `NoFrameskip-v0` games), minimal action set, no life-loss signal
  (AtariPreprocessing's `terminal_on_life_loss` default False), no no-op starts.
Rewards reach the learner clipped to [-1, 1] (in the loop); every logged return
is the raw game score.

Testing hook: with the environment variable PLASTICITY_RL_FAKE_ENVPOOL=1 (`FAKE_ENVPOOL_ENV`) the envs come
from envs/fake_envpool.py (synthetic games with envpool's API, no emulator) instead of envpool, and one warning
line per process says so; `backend()` names the one in use. It is read each time envs are made; tests set it
with the `fake_envpool` / `fake_run_env` fixtures (tests/conftest.py, docs/testing.md).
"""

import difflib
import functools
import os
import re
from typing import NamedTuple

import numpy as np

from plasticity_rl import atari_games

FRAME_SKIP = 4
FRAME_SHAPE = (84, 84)


class Protocol(NamedTuple):
  sticky_action_prob: float
  full_action_space: bool
  life_loss_discount: bool  # True: discount 0 on life loss, the game goes on.
  noop_max: int  # envpool: 1 means "no no-op starts".


PROTOCOLS = {
    "machado": Protocol(sticky_action_prob=0.25, full_action_space=True, life_loss_discount=False, noop_max=1),
    "dqn_zoo": Protocol(sticky_action_prob=0.0, full_action_space=False, life_loss_discount=True, noop_max=30),
    "atari100k": Protocol(sticky_action_prob=0.0, full_action_space=False, life_loss_discount=True, noop_max=1),
    "dopamine": Protocol(sticky_action_prob=0.25, full_action_space=False, life_loss_discount=False, noop_max=1),
}


FAKE_ENVPOOL_ENV = "PLASTICITY_RL_FAKE_ENVPOOL"


def backend() -> str:
  """"envpool", or "fake_envpool" where PLASTICITY_RL_FAKE_ENVPOOL=1 (tests only; see the module doc)."""
  value = os.environ.get(FAKE_ENVPOOL_ENV, "")
  if value not in ("", "0", "1"):
    raise ValueError(f"{FAKE_ENVPOOL_ENV}={value!r}: set it to 1 (tests: the fake envpool) or unset it")
  return "fake_envpool" if value == "1" else "envpool"


def _envpool():
  """The envpool module, or envs/fake_envpool.py under the testing hook (one warning line per process)."""
  if backend() == "fake_envpool":
    from plasticity_rl.envs import fake_envpool  # pylint: disable=g-import-not-at-top
    fake_envpool.warn_once()
    return fake_envpool
  import envpool  # pylint: disable=g-import-not-at-top  (seconds to import: only once envs are made)
  return envpool


def envpool_atari_games() -> tuple[str, ...]:
  """Every Atari task envpool ships, without the "-v5" suffix."""
  return _atari_games(backend())


@functools.cache
def _atari_games(backend_name: str) -> tuple[str, ...]:
  del backend_name  # The cache key: the hook may change within a process (tests).
  specs = _envpool().registration.registry.specs
  return tuple(sorted(e.removesuffix("-v5") for e, spec in specs.items()
                      if e.endswith("-v5") and spec[0] == "envpool.atari"))


def _key(name: str) -> str:
  return re.sub(r"[^a-z0-9]", "", re.sub(r"-v\d+$", "", name.strip()).lower())


def resolve_game(name: str) -> str:
  """"Pong", "Pong-v5", "pong" -> "Pong"; ValueError naming the choices otherwise."""
  canonical = atari_games.canonical_game(name)
  if canonical is not None:
    return canonical
  by_key = {_key(g): g for g in envpool_atari_games()}
  if _key(name) in by_key:
    return by_key[_key(name)]
  close = difflib.get_close_matches(_key(name), list(by_key), n=3, cutoff=0.75)
  hint = f" (did you mean {' or '.join(repr(by_key[k]) for k in close)}?)" if close else ""
  raise ValueError(
      f"unknown game {name!r}{hint}: use one of the 57 benchmark games ({', '.join(atari_games.ATARI57)}) "
      f"or another envpool Atari task ({', '.join(g for g in envpool_atari_games() if g not in atari_games.ATARI57)})")


def make_envs(game: str, protocol: str, num_envs: int, seed: int, max_episode_frames: int = 108_000,
              render: bool = False):
  """A gymnasium-API envpool batch of `num_envs` envs under the named protocol; `render`: `envs.render(env_ids)`
  gives their RGB screens (the observations are the same either way)."""
  preset = PROTOCOLS[protocol]
  return _envpool().make(
      f"{resolve_game(game)}-v5",
      env_type="gymnasium",
      num_envs=num_envs,
      seed=seed,
      stack_num=1,
      frame_skip=FRAME_SKIP,
      img_height=FRAME_SHAPE[0],
      img_width=FRAME_SHAPE[1],
      gray_scale=True,
      noop_max=preset.noop_max,
      repeat_action_probability=preset.sticky_action_prob,
      full_action_space=preset.full_action_space,
      episodic_life=False,  # Life loss is a learning signal only (see EnvStep).
      use_fire_reset=False,  # envpool's default (True) presses FIRE at reset; neither protocol does.
      reward_clip=False,  # Raw scores; the loop clips for learning.
      max_episode_steps=max_episode_frames // FRAME_SKIP,
      **({"render_mode": "rgb_array"} if render else {}),
  )


def num_actions(game: str, protocol: str) -> int:
  """The size of the game's action set under the protocol (made once per process: an env takes seconds)."""
  return _num_actions(resolve_game(game), PROTOCOLS[protocol].full_action_space, backend())


@functools.cache
def _num_actions(game: str, full_action_space: bool, backend_name: str) -> int:
  del backend_name  # The cache key, as in _atari_games.
  protocol = next(p for p, preset in PROTOCOLS.items() if preset.full_action_space == full_action_space)
  return make_envs(game, protocol, num_envs=1, seed=0).action_space.n


class EnvStep(NamedTuple):
  """One vectorized step in timestep convention (see replay.py)."""

  frame: np.ndarray  # uint8 [N, 84, 84]: the newest frame of o_t.
  reward: np.ndarray  # float32 [N]: raw reward on arriving at o_t.
  terminal: np.ndarray  # bool [N]: no bootstrapping from o_t (game over, or life loss if the protocol says so).
  last: np.ndarray  # bool [N]: o_t ends the episode (game over or time limit).
  first: np.ndarray  # bool [N]: o_t starts an episode.
  lives: np.ndarray  # int [N]


def step_flags(terminated, truncated, game_over, lives, previous_last, previous_lives, life_loss_discount: bool,
               xp=np):
  """(first, last, terminal) of one envpool step, rows in env_id order; `xp`: np (AtariStepper) or jnp (XlaActor).

  `terminated`, `truncated`: envpool's; `game_over`: its info["terminated"] (a game over on the episode cap's last
  step comes as truncated, not terminated, with info["terminated"] = 1: a game over all the same, so no
  bootstrapping from it); `lives`: info["lives"]; `previous_last`, `previous_lives`: `last` and `lives` of the
  env's previous step (`last` all False and the reset's lives after a reset).
  """
  terminated = xp.logical_or(terminated, xp.asarray(game_over).astype(bool))
  first = previous_last  # envpool auto-resets an env on the step after its last one.
  last = xp.logical_or(terminated, truncated)
  terminal = terminated
  if life_loss_discount:
    terminal = terminal | ((lives < previous_lives) & ~first)
  return first, last, terminal


class AtariStepper:
  """Wraps an envpool batch into EnvSteps: derives first/last/terminal flags.

  `step(actions)` is `send(actions)` then `recv()`: between the two the envs step on envpool's threads while
  the caller works (the training loop dispatches its updates there). The pool must be synchronous
  (batch_size == num_envs, envpool's default), so that `recv` returns every env; rows come back in env_id order.
  """

  def __init__(self, envs, protocol: str):
    self.envs = envs
    self.life_loss_discount = PROTOCOLS[protocol].life_loss_discount
    self._pending = False

  def reset(self) -> EnvStep:
    obs, info = self.envs.reset()
    n = obs.shape[0]
    self._pending = False
    self._env_ids = np.arange(n)
    self._last = np.zeros(n, bool)
    self._lives = info["lives"].copy()
    return EnvStep(obs[:, -1], np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool), np.ones(n, bool),
                   self._lives.copy())

  def send(self, actions: np.ndarray) -> None:
    """Starts one step of every env; `recv` returns it."""
    if self._pending:
      raise RuntimeError("send() twice without recv(): one step at a time")
    self.envs.send(np.asarray(actions))
    self._pending = True

  def recv(self) -> EnvStep:
    """Waits for the step `send` started."""
    if not self._pending:
      raise RuntimeError("recv() without send()")
    obs, reward, terminated, truncated, info = self.envs.recv()
    self._pending = False
    lives, env_id = info["lives"], np.asarray(info["env_id"])
    if env_id.shape != self._env_ids.shape:
      raise RuntimeError(f"envpool returned {env_id.shape[0]} of {self._env_ids.shape[0]} envs: make the pool "
                         "with batch_size == num_envs")
    game_over = np.asarray(info.get("terminated", terminated))
    if not np.array_equal(env_id, self._env_ids):  # Never seen with a synchronous pool; cheap to guard.
      order = np.argsort(env_id)
      obs, reward, terminated, truncated, game_over, lives = (
          x[order] for x in (obs, reward, terminated, truncated, game_over, lives))
    first, last, terminal = step_flags(terminated, truncated, game_over, lives, self._last, self._lives,
                                       self.life_loss_discount)
    self._last, self._lives = last, lives.copy()
    return EnvStep(obs[:, -1], reward.astype(np.float32), terminal, last, first, lives.copy())

  def step(self, actions: np.ndarray) -> EnvStep:
    self.send(actions)
    return self.recv()


class FrameStacker:
  """Keeps the last `stack_size` frames per env; frames before an episode's start are zeros."""

  def __init__(self, num_envs: int, stack_size: int = 4, frame_shape=FRAME_SHAPE):
    self.stack = np.zeros((num_envs, *frame_shape, stack_size), np.uint8)

  def push(self, frame: np.ndarray, first: np.ndarray) -> np.ndarray:
    self.stack[first] = 0
    self.stack[..., :-1] = self.stack[..., 1:]
    self.stack[..., -1] = frame
    return self.stack
