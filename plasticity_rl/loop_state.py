"""What the training loop carries between iterations, saved and restored as a unit.

- `SeedLoop`: one seed's loop state besides its TrainState and act key (which
  the learner holds): its eval and surgery keys, counters, recent returns,
  evaluations, and the state of its per-seed decisions (metric trigger,
  adaptive replay ratio, expansion's experience review).
- `Cadence`: when the shared periodic work is next due (log, eval, plasticity
  metrics, checkpoint), one frame counter for every seed.

A checkpoint's `loop` dict (checkpoint.py) is `SeedLoop.to_dict` + `Cadence`'s
fields + the frame count, with the keys it has always had (LOOP_KEYS), so older
checkpoints resume and newer ones are read by older tools.
"""

import dataclasses
from typing import Any

import jax

from plasticity_rl import expansion
from plasticity_rl import triggers

# A checkpoint's `loop` dict, as written since checkpoints exist (next_metrics, trigger, expansion_review and
# replay_ratio_state came later; a checkpoint without them resumes with their initial values).
LOOP_KEYS = ("frames", "updates", "episodes", "updates_due", "next_log", "next_eval", "recent_returns", "eval_means",
             "info_count", "next_metrics", "trigger", "expansion_review", "replay_ratio_state", "info_sum",
             "wall_seconds")
RECENT_RETURNS = 20  # The training episodes the progress line and `episode_return_recent` average.


def next_multiple(frames: int, period: int) -> int:
  return (frames // period + 1) * period


@dataclasses.dataclass
class Cadence:
  """The frames at which the loop next logs, evaluates, measures plasticity and saves (None: never).

  Logs and evaluations due are caught up one period at a time (`+= period`); metrics and checkpoints go to the
  next multiple of their period past the frame count.
  """

  log_period: int
  eval_period: int
  metrics_period: int  # 0: no plasticity metrics.
  save_period: int  # 0: checkpoints only at the end (and on a stop).
  next_log: int = 0
  next_eval: int = 0
  next_metrics: int | None = None
  next_save: int | None = None

  @classmethod
  def from_config(cls, config, frames: int, saved: dict[str, Any] | None = None) -> "Cadence":
    """At `frames`: a resume's `saved` loop dict carries on; a new run (or a reincarnated one, at the saved
    agent's frames) starts with the next multiple of each of this config's periods."""
    cadence = cls(config.log.period_frames, config.eval.period_frames, config.metrics.period_frames or 0,
                  config.checkpoint.period_frames or 0)
    if saved is not None:
      cadence.next_log, cadence.next_eval, cadence.next_metrics = (saved["next_log"], saved["next_eval"],
                                                                   saved.get("next_metrics"))
    else:
      cadence.next_log = next_multiple(frames, cadence.log_period)
      cadence.next_eval = next_multiple(frames, cadence.eval_period)
      cadence.next_metrics = next_multiple(frames, cadence.metrics_period) if cadence.metrics_period else None
    cadence.next_save = next_multiple(frames, cadence.save_period) if cadence.save_period else None
    return cadence

  def log_due(self, frames: int) -> bool:
    if frames < self.next_log:
      return False
    self.next_log += self.log_period
    return True

  def eval_due(self, frames: int) -> bool:
    """Whether an evaluation is due; it stays due until `evaluated()` (a stopped one runs first on resume)."""
    return frames >= self.next_eval

  def evaluated(self) -> None:
    self.next_eval += self.eval_period

  def metrics_due(self, frames: int) -> bool:
    if self.next_metrics is None or frames < self.next_metrics:
      return False
    self.next_metrics = next_multiple(frames, self.metrics_period)
    return True

  def save_due(self, frames: int) -> bool:
    if self.next_save is None or frames < self.next_save:
      return False
    self.next_save = next_multiple(frames, self.save_period)
    return True

  def to_dict(self) -> dict[str, Any]:
    return {"next_log": self.next_log, "next_eval": self.next_eval, "next_metrics": self.next_metrics}


@dataclasses.dataclass
class SeedLoop:
  """One seed's loop state (module docstring); the learner holds its TrainState, act key and info sums."""

  eval_rng: jax.Array
  surgery_rng: jax.Array
  trigger: triggers.TriggerState
  replay_ratio_state: triggers.ReplayRatioState | None = None
  review: expansion.Review | None = None
  updates: int = 0
  updates_due: float = 0.0
  episodes: int = 0
  recent_returns: list[float] = dataclasses.field(default_factory=list)
  eval_means: list[tuple[int, float]] = dataclasses.field(default_factory=list)

  @classmethod
  def start(cls, config, eval_rng: jax.Array, surgery_rng: jax.Array) -> "SeedLoop":
    """A new run's: the config's initial trigger, replay-ratio and review states."""
    adaptive = config.learner.adaptive_replay_ratio
    return cls(eval_rng=eval_rng, surgery_rng=surgery_rng, trigger=triggers.init_trigger(config.injection.trigger),
               replay_ratio_state=triggers.init_replay_ratio(adaptive) if adaptive.enabled else None,
               review=expansion.Review.from_config(config))

  def replay_ratio(self, config) -> float:
    return config.learner.replay_ratio if self.replay_ratio_state is None else self.replay_ratio_state.replay_ratio

  def add_episode(self, episode_return: float) -> None:
    self.recent_returns = (self.recent_returns + [episode_return])[-RECENT_RETURNS:]
    self.episodes += 1

  def restore(self, loop: dict[str, Any], keys: dict[str, jax.Array], *, resumed: bool) -> None:
    """Carries on from a checkpoint's loop dict and keys (load "all"); `resumed` (this run's own checkpoint,
    not a reincarnation's source) also restores the per-seed decisions' states."""
    self.eval_rng, self.surgery_rng = keys["eval"], keys["surgery"]
    self.updates, self.updates_due, self.episodes = loop["updates"], loop["updates_due"], loop["episodes"]
    self.recent_returns = list(loop["recent_returns"])
    self.eval_means = [(int(f), float(r)) for f, r in loop["eval_means"]]
    if resumed:
      if loop.get("trigger"):
        self.trigger = triggers.from_dict(loop["trigger"])
      if self.review is not None and loop.get("expansion_review"):
        self.review.load_state_dict(loop["expansion_review"])
      if loop.get("replay_ratio_state"):
        self.replay_ratio_state = triggers.replay_ratio_from_dict(loop["replay_ratio_state"])

  def to_dict(self, frames: int, cadence: Cadence, info_sum: dict[str, float] | None, info_count: int,
              wall_seconds: float) -> dict[str, Any]:
    """The checkpoint's loop dict (LOOP_KEYS)."""
    out = {"frames": frames, "updates": self.updates, "episodes": self.episodes, "updates_due": self.updates_due,
           **cadence.to_dict(), "recent_returns": self.recent_returns, "eval_means": self.eval_means,
           "info_count": info_count, "trigger": triggers.to_dict(self.trigger),
           "expansion_review": self.review and self.review.state_dict(),
           "replay_ratio_state": self.replay_ratio_state and triggers.replay_ratio_to_dict(self.replay_ratio_state),
           "info_sum": info_sum, "wall_seconds": wall_seconds}
    return {k: out[k] for k in LOOP_KEYS}


def keys_dict(act_rng: jax.Array, seed_loop: SeedLoop) -> dict[str, jax.Array]:
  """The RNG keys a checkpoint saves, by name."""
  return {"act": act_rng, "eval": seed_loop.eval_rng, "surgery": seed_loop.surgery_rng}
