"""What the training loops (train.py, multi_seed.py) say on the console while they run.

- `Throughput`: the rates of the metrics rows, and the ETA of the progress lines: the remaining frames at the
  recent rate of the current phase (see the class), plus one early progress line per phase.
- `Compilation`: the loop's jit compilations (update, plasticity metrics), announced before the call that
  compiles (the loop waits for it) and timed; each starts a new throughput phase.
- `event_line`: an intervention event (metrics.jsonl's "event" row) as one readable line.
"""

import collections
import time
from typing import Any, Callable, Sequence

from absl import logging
import jax

WARM_UP, LEARNING = "warm-up", "learning"


def clock(seconds: float) -> str:
  """H:MM:SS."""
  seconds = max(int(seconds), 0)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Throughput:
  """Frames and updates per second: since the last metrics row (`tick`), and recent ones for the ETA.

  The ETA divides the frames left by the rate of the current phase over its last `window_s` seconds. A phase
  starts with the loop (warm-up: acting without updates, when learning has not started), and again after
  each compilation of the update (`new_phase`: learning, several times slower per frame than warm-up), so
  neither the compile's seconds nor the warm-up's faster steps leak into the learning rate. During warm-up
  the line says when learning starts instead of an ETA for the run. `early_line` is True once per phase,
  `first_line_s` into it (unless a progress line came by then), so a line with the phase's rate comes within
  seconds, not one log period, after the start and after each compile.
  """

  def __init__(self, frames: int, updates: int, phase: str = WARM_UP, window_s: float = 120.0,
               first_line_s: float = 15.0, clock_fn: Callable[[], float] = time.time):
    self._now = clock_fn
    self.time, self.frames, self.updates = self._now(), frames, updates
    self.start_time, self.start_frames = self.time, frames
    self.window_s, self.first_line_s = window_s, first_line_s
    self.new_phase(phase, frames)

  def new_phase(self, phase: str, frames: int) -> None:
    self.phase, self.phase_time = phase, self._now()
    self._samples = collections.deque([(self.phase_time, frames)])
    self._measured = False  # Whether a progress line came first_line_s or more into the phase.

  def _sample(self, frames: int) -> None:
    now = self._now()
    self._samples.append((now, frames))
    while len(self._samples) > 2 and self._samples[1][0] <= now - self.window_s:
      self._samples.popleft()
    self._measured = self._measured or now - self.phase_time >= self.first_line_s

  def tick(self, frames: int, updates: int) -> dict[str, float]:
    """fps and updates_per_s since the previous tick (a metrics row each log period)."""
    now = self._now()
    dt = max(now - self.time, 1e-9)
    out = {"fps": (frames - self.frames) / dt, "updates_per_s": (updates - self.updates) / dt}
    self.time, self.frames, self.updates = now, frames, updates
    self._sample(frames)
    return out

  def early_line(self, frames: int) -> bool:
    """True (once per phase) when a progress line is due before the log period's: `first_line_s` into a phase
    that has had no line since then (a line right at a phase's start has no rate to show yet)."""
    if self._measured or self._now() - self.phase_time < self.first_line_s:
      return False
    self._sample(frames)
    return True

  def rate(self, frames: int) -> float | None:
    """Frames per second over the phase's recent window; None before a second or a frame of it has passed."""
    t0, f0 = self._samples[0]
    dt = self._now() - t0
    return (frames - f0) / dt if dt >= 1.0 and frames > f0 else None

  def eta(self, frames: int, total: int, learning_starts: int = 0) -> str:
    """'ETA H:MM:SS' at the phase's recent rate; in warm-up, when learning starts."""
    rate = self.rate(frames)
    if frames < learning_starts:
      left = f" in ~{clock((learning_starts - frames) / rate)}" if rate else ""
      return f"warm-up: learning starts at {learning_starts:,} frames{left}"
    return f"ETA {clock((total - frames) / rate)}" if rate else "ETA – (measuring)"


def _signature(tree) -> tuple:
  """What jit's cache key sees of a pytree: its structure and every leaf's shape and dtype."""
  leaves, structure = jax.tree.flatten(tree)
  return structure, tuple((getattr(x, "shape", None), str(getattr(x, "dtype", type(x)))) for x in leaves)


class Compilation:
  """Announces the loop's jit compilations (the update, the plasticity metrics), times them, and starts a
  learning phase of the throughput after each.

  jit compiles a function on its first call and again when the state's tree or shapes change (an injection
  adds a branch, growth widens layers); that call blocks the loop for the compile. `changed` is told of each
  intervention's before/after state; `call(what, fn, …)` wraps every call of a jitted function.
  """

  def __init__(self, throughput: Throughput):
    self.throughput = throughput
    self.reasons: dict[str, str | None] = {}  # what -> why its next call compiles (None: it does not).
    self.seconds: dict[str, float] = {}  # what -> its last compile's seconds.

  def changed(self, before, after, name: str, frames: int) -> None:
    if self.reasons and _signature(before) != _signature(after):
      self.reasons = {what: f"after {name} at {frames:,} frames" for what in self.reasons}

  def call(self, what: str, fn: Callable, *args, frames: int, **kwargs) -> Any:
    reason = self.reasons.setdefault(what, "first call")
    if reason is None:
      return fn(*args, **kwargs)
    last = self.seconds.get(what)
    logging.info("%s %s at %s frames (%s; the loop waits%s)…", "compiling" if last is None else "recompiling",
                 what, f"{frames:,}", reason, f", ~{last:.0f} s as the last time" if last else "")
    start = time.time()
    out = fn(*args, **kwargs)  # jit compiles while dispatching; the computation itself runs on.
    self.seconds[what] = time.time() - start
    logging.info("compiled %s in %.1f s", what, self.seconds[what])
    self.throughput.new_phase(LEARNING, frames)
    self.reasons[what] = None
    return out


def _number(value) -> str:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return str(value)
  return f"{value:,}" if isinstance(value, int) else f"{value:.3g}"


_SHOWN = ("name", "params_trainable", "params_frozen", "params_total", "max_abs_dq", "max_abs_dq_target")


def event_line(frames: int, before: dict[str, Any], events: Sequence[dict[str, Any]]) -> str:
  """'injection at 200,000 frames: trainable 1,234 → 2,468, frozen 0 → 1,234, max |ΔQ| 0 (target 0)'.

  `before`: train.param_counts of the state before; `events`: the event row of each seed (one for a single
  run; the seeds' values are joined with ' / ' where they differ).
  """
  def values(key):
    shown = [_number(e[key]) for e in events if key in e]
    return shown[0] if len(set(shown)) == 1 else " / ".join(shown)

  first = events[0]
  parts = [f"trainable {before['params_trainable']:,} → {values('params_trainable')}"]
  if before["params_frozen"] or first["params_frozen"]:
    parts.append(f"frozen {before['params_frozen']:,} → {values('params_frozen')}")
  parts.append(f"max |ΔQ| {values('max_abs_dq')} (target {values('max_abs_dq_target')})")
  parts += [f"{key} {values(key)}" for key in first if key not in _SHOWN]
  seeds = f" ({len(events)} seeds)" if len(events) > 1 else ""
  return f"{first['name']} at {frames:,} frames{seeds}: " + ", ".join(parts)


_LOADS = {  # What each reincarnate.load takes from the saved agent (checkpoint.Restored.train_state).
    "params": "its params; a fresh optimizer state and replay, counters from 0",
    "params+optimizer": "its params, target params and optimizer state; a fresh replay, counters from 0",
    "params+optimizer+replay": "its params, target params, optimizer state and replay; counters from 0",
    "all": "everything, counters and RNG keys too: the run goes on from its frames",
}


def reincarnation_line(path: str, frames: int, load: str) -> str:
  return f"reincarnating {path}: the agent saved at {frames:,} frames; load {load!r}: {_LOADS.get(load, load)}"
