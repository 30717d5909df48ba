"""Tests for plasticity_rl.replay against a slow per-episode reference."""

import dataclasses

import hypothesis
from hypothesis import strategies as st
import numpy as np
import pytest

from plasticity_rl.replay import ReplayBuffer

FRAME_SHAPE = (2, 2)


def _frame(env: int, t: int) -> np.ndarray:
  """A nonzero frame that identifies (env, t)."""
  return np.array([[t % 256, t // 256], [env + 1, 255]], np.uint8)


@dataclasses.dataclass
class _Entry:
  t: int
  frame: np.ndarray
  action: int
  reward: float
  terminal: bool
  last: bool


class Reference:
  """Obviously-correct replay: per env, a list of episodes (lists of entries)."""

  def __init__(self, num_envs, cap_per_env, stack_size, n_step, gamma):
    self.episodes = [[] for _ in range(num_envs)]
    self.where = [{} for _ in range(num_envs)]  # t -> (episode index, position).
    self.cap, self.stack, self.n, self.gamma = cap_per_env, stack_size, n_step, gamma
    self.num_added = 0

  def add(self, frame, action, reward, terminal, last, first):
    for e, episodes in enumerate(self.episodes):
      if first[e]:
        if episodes:  # A new episode truncates the previous one.
          episodes[-1][-1].last = True
        episodes.append([])
      entry = _Entry(self.num_added, frame[e].copy(), int(action[e]), float(reward[e]),
                     bool(terminal[e]), bool(last[e]))
      self.where[e][self.num_added] = (len(episodes) - 1, len(episodes[-1]))
      episodes[-1].append(entry)
    self.num_added += 1

  def _stack(self, episode, p):
    frames = [episode[p - j].frame if p - j >= 0 else np.zeros(FRAME_SHAPE, np.uint8)
              for j in reversed(range(self.stack))]
    times = [episode[p - j].t for j in range(self.stack) if p - j >= 0]
    return np.stack(frames, axis=-1), times

  def transition(self, e, t):
    """The transition at (e, t), and the entry times it reads."""
    i, p = self.where[e][t]
    episode = self.episodes[e][i]
    obs, times = self._stack(episode, p)
    reward, discount, k = 0.0, self.gamma**self.n, self.n
    for k in range(1, self.n + 1):
      entry = episode[p + k]
      times.append(entry.t)
      reward += self.gamma**(k - 1) * entry.reward
      if entry.terminal or entry.last:
        discount = 0.0 if entry.terminal else self.gamma**k
        break
    next_obs, next_times = self._stack(episode, p + k)
    return dict(obs=obs, next_obs=next_obs, reward=reward, discount=discount,
                action=episode[p].action), times + next_times

  def is_last(self, e, t):
    i, p = self.where[e][t]
    return self.episodes[e][i][p].last

  def stored(self, t):
    return max(0, self.num_added - self.cap) <= t < self.num_added

  def expected_valid(self):
    """All (e, t) the buffer's (documented, conservative) rule deems valid."""
    oldest = max(0, self.num_added - self.cap)
    lo = oldest + self.stack - 1 if oldest else 0
    return {(e, t) for e in range(len(self.episodes))
            for t in range(lo, self.num_added - self.n) if not self.is_last(e, t)}


def _check_batch(batch, ref):
  for i, (e, t) in enumerate(zip(batch["env_index"], batch["time_index"])):
    e, t = int(e), int(t)
    assert t in ref.where[e], (e, t)
    assert not ref.is_last(e, t), (e, t)
    want, times = ref.transition(e, t)
    assert all(ref.stored(u) for u in times), (e, t, times)  # Nothing overwritten read.
    np.testing.assert_array_equal(batch["obs"][i], want["obs"], err_msg=f"{(e, t)}")
    np.testing.assert_array_equal(batch["next_obs"][i], want["next_obs"], err_msg=f"{(e, t)}")
    assert batch["action"][i] == want["action"]
    np.testing.assert_allclose(batch["reward"][i], want["reward"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batch["discount"][i], want["discount"], rtol=1e-6)


def _check_dtypes(batch, b, stack):
  assert batch["obs"].dtype == batch["next_obs"].dtype == np.uint8
  assert batch["obs"].shape == batch["next_obs"].shape == (b, *FRAME_SHAPE, stack)
  assert batch["action"].dtype == np.int32
  assert batch["reward"].dtype == batch["discount"].dtype == np.float32


class Stream:
  """Feeds both a buffer and the reference; tracks per-env episode state."""

  def __init__(self, buffer, ref, num_envs):
    self.buffer, self.ref, self.num_envs = buffer, ref, num_envs
    self.prev_last = np.ones(num_envs, bool)
    self.t = 0

  def step(self, events, rewards=None, actions=None, resets=None):
    """events[e] in {"", "life", "over", "trunc"}; resets: force first (restore)."""
    e_ = self.num_envs
    first = self.prev_last.copy() if resets is None else self.prev_last | np.asarray(resets)
    terminal = np.array([ev in ("life", "over") for ev in events])
    last = np.array([ev in ("over", "trunc") for ev in events])
    rewards = np.zeros(e_, np.float32) if rewards is None else np.asarray(rewards, np.float32)
    rewards = np.where(first, 0.0, rewards).astype(np.float32)
    actions = np.zeros(e_, np.int64) if actions is None else np.asarray(actions)
    frame = np.stack([_frame(e, self.t) for e in range(e_)])
    args = (frame, actions, rewards, terminal, last, first)
    self.buffer.add(*args)
    self.ref.add(*args)
    self.prev_last = last
    self.t += 1


def _make(num_envs, cap_per_env, stack=4, n=1, gamma=0.9, seed=0):
  buffer = ReplayBuffer(cap_per_env * num_envs, num_envs, frame_shape=FRAME_SHAPE,
                        stack_size=stack, n_step=n, gamma=gamma, seed=seed)
  ref = Reference(num_envs, buffer.capacity_per_env, stack, n, gamma)
  return buffer, ref, Stream(buffer, ref, num_envs)


# -- Property test against the reference --------------------------------------

_EVENTS = st.sampled_from(["", "", "", "", "", "life", "over", "trunc", "reset"])


@st.composite
def _streams(draw):
  num_envs = draw(st.integers(1, 3))
  n = draw(st.sampled_from([1, 3]))
  cap_per_env = draw(st.integers(4 + n, 24))
  steps = draw(st.integers(1, 60))
  events = draw(st.lists(st.lists(_EVENTS, min_size=num_envs, max_size=num_envs),
                         min_size=steps, max_size=steps))
  rewards = draw(st.lists(st.lists(st.sampled_from([-1.0, 0.0, 0.5, 1.0, 3.0]),
                                   min_size=num_envs, max_size=num_envs),
                          min_size=steps, max_size=steps))
  actions = draw(st.lists(st.lists(st.integers(0, 17), min_size=num_envs, max_size=num_envs),
                          min_size=steps, max_size=steps))
  seed = draw(st.integers(0, 2**16))
  return num_envs, n, cap_per_env, events, rewards, actions, seed


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(_streams())
def test_matches_reference(stream_args):
  num_envs, n, cap_per_env, events, rewards, actions, seed = stream_args
  buffer, ref, stream = _make(num_envs, cap_per_env, n=n, gamma=0.9, seed=seed)
  for step_events, step_rewards, step_actions in zip(events, rewards, actions):
    resets = [ev == "reset" for ev in step_events]
    step_events = ["" if ev == "reset" else ev for ev in step_events]
    stream.step(step_events, step_rewards, step_actions, resets=resets)
    valid = ref.expected_valid()
    if not valid:
      with pytest.raises(ValueError, match="No valid indices"):
        buffer.sample(4)
      continue
    batch = buffer.sample(16)
    _check_dtypes(batch, 16, 4)
    _check_batch(batch, ref)
    assert {(int(e), int(t)) for e, t in zip(batch["env_index"], batch["time_index"])} <= valid
  assert len(buffer) == num_envs * min(len(events), buffer.capacity_per_env)


def test_samples_uniformly_over_all_valid_indices():
  buffer, ref, stream = _make(num_envs=3, cap_per_env=10, n=3)
  rng = np.random.default_rng(1)
  for _ in range(27):  # Wraps the ring.
    stream.step(rng.choice(["", "", "", "life", "over", "trunc"], size=3).tolist())
  valid = ref.expected_valid()
  assert len(valid) >= 5
  batch = buffer.sample(20000)
  pairs = list(zip(batch["env_index"].tolist(), batch["time_index"].tolist()))
  assert set(pairs) == valid
  counts = np.array([pairs.count(v) for v in sorted(valid)])
  expected = 20000 / len(valid)
  assert np.all(np.abs(counts - expected) < 6 * np.sqrt(expected))


# -- Hand-written cases --------------------------------------------------------


def _sample_at(buffer, e, t, batch=4096):
  """All sampled rows of (e, t) (asserts it was sampled)."""
  out = buffer.sample(batch)
  idx = np.flatnonzero((out["env_index"] == e) & (out["time_index"] == t))
  assert idx.size, f"{(e, t)} never sampled"
  return {k: v[idx[0]] for k, v in out.items()}


def _stack_ts(stack):
  """Entry times of the frames of a [*FRAME_SHAPE, S] stack (-1: zero padding)."""
  return [int(stack[0, 0, j]) + 256 * int(stack[0, 1, j]) + (1 if stack[1, 1, j] else 0) - 1
          for j in range(stack.shape[-1])]


def test_stack_zero_pads_at_episode_start():
  buffer, _, stream = _make(num_envs=1, cap_per_env=20, n=1)
  for ev in ["", "", "over", "", "", ""]:  # Episode 2 starts at t=3.
    stream.step([ev])
  s = _sample_at(buffer, 0, 1)
  assert _stack_ts(s["obs"]) == [-1, -1, 0, 1]
  np.testing.assert_array_equal(s["obs"][..., :2], 0)
  assert _stack_ts(s["next_obs"]) == [-1, 0, 1, 2]
  s = _sample_at(buffer, 0, 4)
  assert _stack_ts(s["obs"]) == [-1, -1, 3, 4]
  assert _stack_ts(s["next_obs"]) == [-1, 3, 4, 5]


def test_next_obs_is_terminal_obs_with_zero_discount():
  buffer, _, stream = _make(num_envs=1, cap_per_env=20, n=1)
  stream.step([""])
  stream.step([""], rewards=[1.0])
  stream.step(["over"], rewards=[5.0])
  stream.step([""])
  stream.step([""])
  s = _sample_at(buffer, 0, 1)
  assert _stack_ts(s["next_obs"]) == [-1, 0, 1, 2]
  assert s["reward"] == 5.0 and s["discount"] == 0.0


def test_truncation_bootstraps_from_final_obs():
  buffer, _, stream = _make(num_envs=1, cap_per_env=20, n=3, gamma=0.5)
  for ev, r in [("", 0), ("", 1.0), ("", 2.0), ("trunc", 4.0), ("", 0), ("", 0), ("", 0)]:
    stream.step([ev], rewards=[r])
  s = _sample_at(buffer, 0, 1)  # Walk 2 -> 3 (last, not terminal).
  assert _stack_ts(s["next_obs"]) == [0, 1, 2, 3]
  assert s["reward"] == pytest.approx(2.0 + 0.5 * 4.0)
  assert s["discount"] == pytest.approx(0.25)
  s = _sample_at(buffer, 0, 0)  # Full 3 steps, last reached exactly at k=3.
  assert s["reward"] == pytest.approx(1.0 + 0.5 * 2.0 + 0.25 * 4.0)
  assert s["discount"] == pytest.approx(0.125)


def test_n_step_stops_at_terminal_and_life_loss_continues():
  buffer, _, stream = _make(num_envs=1, cap_per_env=30, n=3, gamma=0.5)
  for ev, r in [("", 0), ("", 1.0), ("life", 2.0), ("", 4.0), ("", 8.0), ("", 16.0), ("", 0)]:
    stream.step([ev], rewards=[r])
  s = _sample_at(buffer, 0, 0)
  assert s["reward"] == pytest.approx(1.0 + 0.5 * 2.0)  # 4.0 after the terminal is excluded.
  assert s["discount"] == 0.0
  assert _stack_ts(s["next_obs"]) == [-1, 0, 1, 2]
  s = _sample_at(buffer, 0, 2)  # The life-loss entry is a valid start.
  assert _stack_ts(s["obs"]) == [-1, 0, 1, 2]  # Stacks continue across a life loss.
  assert s["reward"] == pytest.approx(4.0 + 0.5 * 8.0 + 0.25 * 16.0)
  assert s["discount"] == pytest.approx(0.125)
  assert _stack_ts(s["next_obs"]) == [2, 3, 4, 5]


def test_never_samples_last_entries():
  buffer, _, stream = _make(num_envs=2, cap_per_env=12, n=1)
  for i in range(40):
    stream.step(["over" if i % 2 else "trunc", "over" if i % 3 == 2 else ""])
  out = buffer.sample(5000)  # Env 0 is always last, env 1 at t % 3 == 2.
  assert set(out["env_index"].tolist()) == {1}
  assert not np.any(out["time_index"] % 3 == 2)


def test_all_last_raises():
  buffer, _, stream = _make(num_envs=2, cap_per_env=8, n=1)
  for _ in range(10):
    stream.step(["over", "trunc"])
  with pytest.raises(ValueError, match="No valid indices"):
    buffer.sample(3)


def test_envs_do_not_bleed():
  buffer, ref, stream = _make(num_envs=3, cap_per_env=10, n=3)
  for i in range(25):
    stream.step(["over" if i == 5 else "", "", "life" if i % 4 == 0 else ""],
                rewards=[1.0, 10.0, 100.0], actions=[1, 2, 3])
  out = buffer.sample(512)
  for i, e in enumerate(out["env_index"]):
    for key in ("obs", "next_obs"):
      codes = out[key][i][1, 0]
      assert set(codes[codes > 0].tolist()) == {e + 1}
    assert out["action"][i] == e + 1
  _check_batch(out, ref)


def test_reset_without_last_truncates_previous_entry():
  buffer, ref, stream = _make(num_envs=2, cap_per_env=20, n=3, gamma=0.5)
  for _ in range(5):
    stream.step(["", ""], rewards=[1.0, 1.0])
  stream.step(["", ""], rewards=[1.0, 1.0], resets=[True, False])  # E.g. after a restore.
  for _ in range(5):
    stream.step(["", ""], rewards=[1.0, 1.0])
  out = buffer.sample(4096)
  pairs = set(zip(out["env_index"].tolist(), out["time_index"].tolist()))
  assert (0, 4) not in pairs and (1, 4) in pairs
  s = _sample_at(buffer, 0, 3)
  assert s["reward"] == pytest.approx(1.0) and s["discount"] == pytest.approx(0.5)
  assert _stack_ts(s["next_obs"]) == [1, 2, 3, 4]
  _check_batch(out, ref)


def test_ring_wrap_excludes_overwritten_history():
  buffer, ref, stream = _make(num_envs=1, cap_per_env=8, n=1)
  for _ in range(20):
    stream.step([""])
  out = buffer.sample(2000)
  # Entries 12..19 stored; starts need 3 older frames stored and t+1 written.
  assert set(out["time_index"].tolist()) == set(range(15, 19))
  _check_batch(out, ref)


def test_oldest_fraction():
  buffer, _, stream = _make(num_envs=2, cap_per_env=100, n=1)
  for _ in range(41):
    stream.step(["", ""])
  out = buffer.sample(2000, oldest_fraction=0.25)  # Start range is t in [0, 39].
  assert set(out["time_index"].tolist()) == set(range(10))
  assert set(out["env_index"].tolist()) == {0, 1}
  with pytest.raises(ValueError):
    buffer.sample(2, oldest_fraction=0.0)
  with pytest.raises(ValueError):
    buffer.sample(2, oldest_fraction=1.5)


def test_state_dict_round_trip(tmp_path):
  buffer, _, stream = _make(num_envs=2, cap_per_env=10, n=3, seed=7)
  rng = np.random.default_rng(0)
  for _ in range(23):
    stream.step(rng.choice(["", "", "life", "over", "trunc"], size=2).tolist(),
                rewards=rng.normal(size=2), actions=rng.integers(0, 18, size=2))
  buffer.sample(8)
  path = tmp_path / "replay.npz"
  np.savez(path, **buffer.state_dict())
  restored = ReplayBuffer(20, 2, frame_shape=FRAME_SHAPE, n_step=3, gamma=0.9, seed=123)
  with np.load(path) as data:
    restored.load_state_dict(dict(data))
  assert restored.num_added == buffer.num_added and len(restored) == len(buffer)
  for _ in range(3):
    a, b = buffer.sample(16), restored.sample(16)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  frame = np.stack([_frame(0, 99), _frame(1, 99)])
  for buf in (buffer, restored):
    buf.add(frame, [1, 2], [0.5, 0.5], [False, False], [False, False], stream.prev_last)
  a, b = buffer.sample(16), restored.sample(16)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  with pytest.raises(ValueError):
    ReplayBuffer(30, 2, frame_shape=FRAME_SHAPE).load_state_dict(buffer.state_dict())


def test_memory_at_84x84():
  buffer = ReplayBuffer(1_000_000, 8)  # np.zeros: pages are not touched.
  assert buffer.capacity == 1_000_000
  assert buffer.bytes_per_transition <= 7.5e3
  assert buffer.nbytes == 1_000_000 * (84 * 84 + 1 + 4 + 1)
  assert len(buffer) == 0


def test_sample_before_enough_data_raises():
  buffer, _, stream = _make(num_envs=2, cap_per_env=10, n=3)
  for _ in range(3):
    stream.step(["", ""])
  with pytest.raises(ValueError, match="No valid indices"):
    buffer.sample(1)
  stream.step(["", ""])
  assert buffer.sample(4)["time_index"].tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("kwargs", [
    dict(capacity=1, num_envs=2),
    dict(capacity=100, num_envs=0),
    dict(capacity=100, num_envs=1, n_step=0),
    dict(capacity=100, num_envs=1, stack_size=0),
    dict(capacity=100, num_envs=1, gamma=1.5),
    dict(capacity=8, num_envs=2, stack_size=4, n_step=1),  # 4 per env < 5.
])
def test_constructor_validation(kwargs):
  with pytest.raises(ValueError):
    ReplayBuffer(**kwargs)


def test_add_validation():
  buffer = ReplayBuffer(20, 2, frame_shape=FRAME_SHAPE)
  frame = np.zeros((2, *FRAME_SHAPE), np.uint8)
  ok = dict(action=[0, 0], reward=[0, 0], terminal=[False, False], last=[False, False])
  with pytest.raises(ValueError, match="first=True"):
    buffer.add(frame, first=[True, False], **ok)
  with pytest.raises(ValueError, match="frame"):
    buffer.add(frame.astype(np.float32), first=[True, True], **ok)
  with pytest.raises(ValueError, match="actions"):
    buffer.add(frame, first=[True, True], **{**ok, "action": [0, 256]})
  buffer.add(frame, first=[True, True], **{**ok, "last": [True, False]})
  with pytest.raises(ValueError, match="must be first"):
    buffer.add(frame, first=[False, False], **ok)
  assert buffer.num_added == 1


def test_stack_size_one():
  buffer = ReplayBuffer(10, 1, frame_shape=FRAME_SHAPE, stack_size=1)
  for t in range(4):
    buffer.add(_frame(0, t)[None], [0], [1.0], [False], [False], [t == 0])
  out = buffer.sample(64)
  assert out["obs"].shape == (64, *FRAME_SHAPE, 1)
  np.testing.assert_array_equal(out["obs"][:, 0, 0, 0], out["time_index"])
  np.testing.assert_array_equal(out["next_obs"][:, 0, 0, 0], out["time_index"] + 1)
