"""A fake envpool for tests: the part of envpool's API that envs/atari.py uses, with no emulator.

Selected only by the environment variable PLASTICITY_RL_FAKE_ENVPOOL=1 (`atari.FAKE_ENVPOOL_ENV`), read each
time envs are made: `atari.make_envs`, `atari.num_actions` and the game list then use this module instead of
envpool, and log one warning line per process saying so. Tests set it through the `fake_envpool` fixture (in
this process) or `fake_run_env` (for subprocesses) of tests/conftest.py; a real run never should (its
returns would be meaningless). tests/test_fake_envpool.py checks this module against real envpool.

What it mimics (envpool 1.2.5, gymnasium API, as atari.make_envs makes pools):
- `make(task_id, env_type="gymnasium", num_envs, seed, stack_num, frame_skip, img_height, img_width,
  gray_scale, noop_max, repeat_action_probability, full_action_space, episodic_life, use_fire_reset,
  reward_clip, max_episode_steps, render_mode)`; unknown keyword arguments are a TypeError, as in envpool.
- `reset() -> (obs, info)`, `send(actions)`, `recv() -> (obs, reward, terminated, truncated, info)`,
  `step(actions)` (send then recv), `xla()` (envpool's XLA interface: `(handle, recv, send, step)`, the same
  calls and outputs as envpool's under jit / lax.scan, each a jax.experimental.io_callback(ordered=True) around
  send/recv, the handle passed through), `render(env_ids)` (RGB [k, 210, 160, 3] uint8, render_mode="rgb_array"
  only), `close()`, `num_envs`, `action_space` / `observation_space` (gymnasium spaces), `spec.config`,
  `config`; `registration.registry.specs` (the 57 benchmark games).
- obs uint8 [N, stack_num, H, W] (gray; [N, 3 * stack_num, H, W] with gray_scale=False); reward float32;
  terminated / truncated bool; info: env_id, players.env_id, lives, reward, terminated, elapsed_step (int32;
  reward float32), ram (uint8 [N, 128], zeros).
- Episodes: envpool's auto-reset (the step after an env's last step returns its new episode's first
  observation, reward 0, elapsed_step 0); truncation after max_episode_steps agent steps, with a game over on
  that step reported as truncated=True, terminated=False, info["terminated"]=1 (as envpool does); env i of a
  pool made with seed s is seeded s + i; sticky actions with repeat_action_probability; the minimal action
  sets' sizes of the 57 games (18 with full_action_space).

The game itself is synthetic and deterministic given the seed and the actions: each episode lasts a number of
steps drawn at its reset (`_GAME_STEPS`); games with lives (all but the ones in `_NO_LIVES`, as Pong) start
with 3 and lose one at evenly spaced steps, the game ending with the last; every `_POINT_PERIOD`-th step scores
a point: +1 if the action equals the "wanted" action drawn on the frame (a bar at the top), else −1 in games
without lives (zero-sum, as Pong: returns within ±21) and 0 in the others. The frames show a moving square,
so consecutive frames differ. Nothing here is Atari: tests of what Atari does (returns, action sets, the
presets' flags) use real envpool.
"""

import types

from absl import logging
import gymnasium
import numpy as np

from plasticity_rl import atari_games

# The minimal action sets' sizes, read from envpool 1.2.5 (envpool.make_spec(f"{game}-v5").action_space.n).
MINIMAL_ACTIONS = {
    "Alien": 18, "Amidar": 10, "Assault": 7, "Asterix": 9, "Asteroids": 14, "Atlantis": 4, "BankHeist": 18,
    "BattleZone": 18, "BeamRider": 9, "Berzerk": 18, "Bowling": 6, "Boxing": 18, "Breakout": 4, "Centipede": 18,
    "ChopperCommand": 18, "CrazyClimber": 9, "Defender": 18, "DemonAttack": 6, "DoubleDunk": 18, "Enduro": 9,
    "FishingDerby": 18, "Freeway": 3, "Frostbite": 18, "Gopher": 8, "Gravitar": 18, "Hero": 18, "IceHockey": 18,
    "Jamesbond": 18, "Kangaroo": 18, "Krull": 18, "KungFuMaster": 14, "MontezumaRevenge": 18, "MsPacman": 9,
    "NameThisGame": 6, "Phoenix": 8, "Pitfall": 18, "Pong": 6, "PrivateEye": 18, "Qbert": 6, "Riverraid": 18,
    "RoadRunner": 18, "Robotank": 18, "Seaquest": 18, "Skiing": 3, "Solaris": 18, "SpaceInvaders": 6,
    "StarGunner": 18, "Surround": 5, "Tennis": 18, "TimePilot": 10, "Tutankham": 8, "UpNDown": 6, "Venture": 18,
    "VideoPinball": 9, "WizardOfWor": 10, "YarsRevenge": 18, "Zaxxon": 18,
}
_NO_LIVES = frozenset({"Pong", "Boxing", "Freeway", "Bowling", "Enduro", "FishingDerby", "IceHockey", "Skiing",
                       "Tennis", "DoubleDunk", "Surround"})
_LIVES = 3
_GAME_STEPS = (40, 160)  # An episode's game-over step, drawn uniformly in [low, high) at its reset.
_POINT_PERIOD = 8
_SCREEN = (210, 160)  # The emulator's RGB screen (render).

registration = types.SimpleNamespace(registry=types.SimpleNamespace(specs={
    f"{game}-v5": ("envpool.atari", "AtariEnvSpec", {"task": atari_games.score_table()[game].ale_rom,
                                                       "max_episode_steps": 27000})
    for game in atari_games.ATARI57}))

_DEFAULTS = {
    "env_type": "gymnasium", "num_envs": 1, "batch_size": 0, "num_threads": 0, "seed": 42, "stack_num": 4,
    "frame_skip": 4, "img_height": 84, "img_width": 84, "gray_scale": True, "noop_max": 30,
    "repeat_action_probability": 0.0, "full_action_space": False, "episodic_life": False, "use_fire_reset": True,
    "reward_clip": False, "max_episode_steps": 27000, "zero_discount_on_life_loss": False,
    "use_inter_area_resize": True, "render_mode": None,
}


def make(task_id: str, **kwargs) -> "FakeAtariPool":
  unknown = sorted(set(kwargs) - set(_DEFAULTS))
  if unknown:
    raise TypeError(f"fake_envpool.make: unexpected keyword arguments {unknown}")
  if task_id not in registration.registry.specs:
    raise ValueError(f"fake_envpool: no task {task_id!r} (it has the 57 benchmark games, e.g. 'Pong-v5')")
  config = {**_DEFAULTS, **kwargs}
  if config["env_type"] != "gymnasium":
    raise ValueError(f"fake_envpool: env_type {config['env_type']!r} (only 'gymnasium')")
  if config["batch_size"] not in (0, config["num_envs"]):
    raise ValueError("fake_envpool: only synchronous pools (batch_size == num_envs)")
  if config["render_mode"] not in (None, "rgb_array"):
    raise ValueError(f"fake_envpool: render_mode {config['render_mode']!r} (only 'rgb_array')")
  return FakeAtariPool(task_id.removesuffix("-v5"), config)


class FakeAtariPool:
  """A synchronous pool of `num_envs` synthetic games with envpool's gymnasium API (see the module doc)."""

  def __init__(self, game: str, config: dict):
    self.game, self.config = game, config
    self.num_envs = n = config["num_envs"]
    self.render_mode = config["render_mode"]
    self.spec = types.SimpleNamespace(config=types.SimpleNamespace(task=game.lower(), **config))
    channels = 1 if config["gray_scale"] else 3
    self._frame_shape = (channels, config["img_height"], config["img_width"])
    self.single_observation_space = gymnasium.spaces.Box(
        0, 255, (channels * config["stack_num"], *self._frame_shape[1:]), np.uint8)
    self.observation_space = self.single_observation_space
    self.single_action_space = gymnasium.spaces.Discrete(18 if config["full_action_space"] else MINIMAL_ACTIONS[game])
    self.action_space = self.single_action_space
    self._has_lives = game not in _NO_LIVES
    self._rngs = [np.random.default_rng(config["seed"] + i) for i in range(n)]
    self._env_ids = np.arange(n, dtype=np.int32)
    self._elapsed = np.zeros(n, np.int32)
    self._lives = np.zeros(n, np.int32)
    self._game_steps = np.zeros(n, np.int32)
    self._phase = np.zeros(n, np.int32)  # Offsets the frames' square (the no-op starts shift it).
    self._wanted = np.zeros(n, np.int32)
    self._previous_action = np.zeros(n, np.int32)
    self._done = np.zeros(n, bool)  # The env's last step was its episode's last: it resets on the next one.
    self._stack = np.zeros((n, config["stack_num"], *self._frame_shape), np.uint8)
    self._actions = None
    self.closed = False

  # -- the game --------------------------------------------------------------------------------------------------

  def _new_episode(self, i: int) -> None:
    rng = self._rngs[i]
    self._elapsed[i] = 0
    self._lives[i] = _LIVES if self._has_lives else 0
    self._game_steps[i] = rng.integers(*_GAME_STEPS)
    self._phase[i] = rng.integers(0, max(self.config["noop_max"], 1)) + 7 * i
    self._wanted[i] = rng.integers(0, self.action_space.n)
    self._previous_action[i] = 0
    self._stack[i] = 0
    self._push_frame(i)

  def _frame(self, i: int) -> np.ndarray:
    channels, h, w = self._frame_shape
    frame = np.full((h, w), 16 + 8 * (self._lives[i] % 4), np.uint8)
    t = int(self._elapsed[i] + self._phase[i])
    size = max(min(h, w) // 12, 1)
    row, col = (3 * t) % max(h - size, 1), (5 * t) % max(w - size, 1)
    frame[row:row + size, col:col + size] = 255
    bar = max(w // self.action_space.n, 1)
    frame[:size, self._wanted[i] * bar:(self._wanted[i] + 1) * bar] = 200  # The action that scores.
    return np.broadcast_to(frame, (channels, h, w))

  def _push_frame(self, i: int) -> None:
    self._stack[i, :-1] = self._stack[i, 1:]
    self._stack[i, -1] = self._frame(i)

  def _obs(self) -> np.ndarray:
    n, stack = self.num_envs, self.config["stack_num"]
    return self._stack.reshape(n, stack * self._frame_shape[0], *self._frame_shape[1:]).copy()

  def _info(self, reward: np.ndarray, game_over: np.ndarray) -> dict:
    return {"env_id": self._env_ids.copy(), "players": {"env_id": self._env_ids.copy()},
            "lives": self._lives.copy(), "reward": reward.astype(np.float32),
            "terminated": game_over.astype(np.int32), "ram": np.zeros((self.num_envs, 128), np.uint8),
            "elapsed_step": self._elapsed.copy()}

  # -- envpool's API ---------------------------------------------------------------------------------------------

  def reset(self):
    for i in range(self.num_envs):
      self._new_episode(i)
    self._done[:] = False
    self._actions = None
    zeros = np.zeros(self.num_envs)
    return self._obs(), self._info(zeros, zeros)

  def send(self, actions, env_id=None) -> None:
    if env_id is not None and not np.array_equal(np.asarray(env_id), self._env_ids):
      raise ValueError("fake_envpool: send() steps every env (env_id must be None or all of them)")
    actions = np.array(actions)
    if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
      raise ValueError(f"fake_envpool: actions must be integers of shape ({self.num_envs},), got "
                       f"{actions.dtype} {actions.shape}")
    if ((actions < 0) | (actions >= self.action_space.n)).any():
      raise ValueError(f"fake_envpool: actions must be in [0, {self.action_space.n}), got {actions}")
    self._actions = actions.astype(np.int32)

  def recv(self):
    if self._actions is None:
      raise RuntimeError("fake_envpool: recv() without send()")
    actions, self._actions = self._actions, None
    n, cap = self.num_envs, self.config["max_episode_steps"]
    reward, terminated, truncated = np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool)
    game_over = np.zeros(n, bool)
    for i in range(n):
      if self._done[i]:  # envpool's auto-reset: this step starts the env's next episode.
        self._new_episode(i)
        self._done[i] = False
        continue
      rng = self._rngs[i]
      action = int(actions[i])
      if rng.random() < self.config["repeat_action_probability"]:
        action = int(self._previous_action[i])
      self._previous_action[i] = action
      self._elapsed[i] += 1
      t = int(self._elapsed[i])
      if t % _POINT_PERIOD == 0:
        reward[i] = 1.0 if action == self._wanted[i] else (0.0 if self._has_lives else -1.0)
        self._wanted[i] = rng.integers(0, self.action_space.n)
      if self._has_lives and t % max(self._game_steps[i] // _LIVES, 1) == 0:
        self._lives[i] = max(self._lives[i] - 1, 0)
      game_over[i] = t >= self._game_steps[i] or (self._has_lives and self._lives[i] == 0)
      if game_over[i]:
        self._lives[i] = 0
      if t >= cap:
        truncated[i] = True  # A game over on the cap's step too: truncated, with info["terminated"] = 1.
      else:
        terminated[i] = game_over[i]
      self._done[i] = terminated[i] or truncated[i]
      self._push_frame(i)
    if self.config["reward_clip"]:
      reward = np.sign(reward).astype(np.float32)
    return self._obs(), reward, terminated, truncated, self._info(reward, game_over)

  def step(self, actions, env_id=None):
    self.send(actions, env_id)
    return self.recv()

  def xla(self):
    """envpool's XLA interface: (handle, recv, send, step), jittable, over this pool's send/recv (see the module doc).

    `send(handle, actions, env_id=None) -> handle`, `recv(handle) -> (handle, (obs, reward, terminated,
    truncated, info))`, `step(handle, actions, env_id=None)` (send then recv), with envpool's shapes and dtypes;
    each is a jax.experimental.io_callback (ordered=True, and the handle passes through it: the calls run once
    each, in program order, under jit and in lax.scan). Reset on the host first (`reset()`), as with envpool.
    """
    import jax  # pylint: disable=g-import-not-at-top  (only the device path's tests need jax here)
    from jax.experimental import io_callback  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

    n = self.num_envs
    handle = np.frombuffer(id(self).to_bytes(8, "little"), np.uint8).copy()  # envpool's: uint8 [8].
    handle_spec = jax.ShapeDtypeStruct(handle.shape, handle.dtype)
    spec = lambda shape, dtype: jax.ShapeDtypeStruct((n, *shape), dtype)
    ids = spec((), np.int32)
    out_spec = (spec(self.observation_space.shape, np.uint8), spec((), np.float32), spec((), np.bool_),
                spec((), np.bool_), {"elapsed_step": ids, "env_id": ids, "lives": ids, "players": {"env_id": ids},
                                     "ram": spec((128,), np.uint8), "reward": spec((), np.float32),
                                     "terminated": ids})

    def host_send(handle, actions, env_id):
      self.send(actions, env_id)
      return handle

    def host_recv(handle):
      obs, reward, terminated, truncated, info = self.recv()
      return handle, (obs, reward, terminated, truncated, {k: info[k] for k in out_spec[4]})

    def send(handle, actions, env_id=None):
      env_id = jnp.arange(n, dtype=jnp.int32) if env_id is None else jnp.asarray(env_id).astype(jnp.int32)
      return io_callback(host_send, handle_spec, handle, jnp.asarray(actions).astype(jnp.int32), env_id,
                         ordered=True)

    def recv(handle):
      return io_callback(host_recv, (handle_spec, out_spec), handle, ordered=True)

    def step(handle, actions, env_id=None):
      return recv(send(handle, actions, env_id))

    return handle, recv, send, step

  def render(self, env_ids=None) -> np.ndarray:
    """The envs' "screens": RGB uint8 [k, 210, 160, 3], the newest frame scaled up (render_mode="rgb_array")."""
    if self.render_mode != "rgb_array":
      raise RuntimeError("fake_envpool: render() needs render_mode='rgb_array'")
    env_ids = self._env_ids if env_ids is None else np.asarray(env_ids)
    h, w = self._frame_shape[1:]
    rows, cols = np.arange(_SCREEN[0]) * h // _SCREEN[0], np.arange(_SCREEN[1]) * w // _SCREEN[1]
    gray = self._stack[env_ids, -1, 0][:, rows][:, :, cols]
    return np.repeat(gray[..., None], 3, axis=-1)

  def close(self) -> None:
    self.closed = True


_warned = False


def warn_once() -> None:
  """One warning line per process: a run on these envs is a test, not an Atari result."""
  global _warned
  if not _warned:
    _warned = True
    logging.warning(
        "PLASTICITY_RL_FAKE_ENVPOOL=1: using plasticity_rl/envs/fake_envpool.py, synthetic games, NOT Atari "
        "(for tests only)")
