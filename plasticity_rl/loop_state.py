"""What the training loop carries between iterations, saved and restored as a unit.

- `SeedLoop`: one seed's loop state besides its TrainState and act key (which
  the learner holds): its eval and surgery keys, counters, recent returns,
  evaluations, and its interventions' loop states (a metric trigger's window,
  the adaptive replay ratio's, expansion's review: per-seed decisions), with
  the loop hooks the loop calls through it.
- `Cadence`: when the shared periodic work is next due (log, eval, plasticity
  metrics, checkpoint), one frame counter for every seed.

A checkpoint's `loop` dict (checkpoint.py) is `SeedLoop.to_dict` + `Cadence`'s
fields + the frame count, with the keys it has always had (LOOP_KEYS), so older
checkpoints resume and newer ones are read by older tools.
"""

import dataclasses
from typing import Any

import jax

from plasticity_rl import compute_cost
from plasticity_rl import interventions
from plasticity_rl.agents import dqn

# A checkpoint's `loop` dict, as written since checkpoints exist (next_metrics, trigger, expansion_review and
# replay_ratio_state came later; a checkpoint without them resumes with their initial values). Three
# interventions' loop states keep the keys they had before the interventions package (their `checkpoint_key`,
# None when the intervention is off); any other intervention's is under "interventions", by name.
LEGACY_KEYS = ("trigger", "expansion_review", "replay_ratio_state")
LOOP_KEYS = ("frames", "updates", "episodes", "updates_due", "next_log", "next_eval", "recent_returns", "eval_means",
             "info_count", "next_metrics", *LEGACY_KEYS, "info_sum", "wall_seconds", "interventions", "train_flops")
RECENT_RETURNS = 20  # The training episodes the progress line and `episode_return_recent` average.


def epsilon(config, frames: int) -> float:
  """ε of the agent steps taken at `frames` (config.exploration, after the learning-starts offset)."""
  e = config.exploration
  return dqn.linear_epsilon(frames, start=e.epsilon_start, end=e.epsilon_end, decay_frames=e.decay_frames,
                            offset_frames=config.replay.learning_starts_frames)


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
  """One seed's loop state (module docstring); the learner holds its TrainState, act key and info sums.

  `hooks`: the config's interventions (interventions.learner_hooks of the seed's config), whose loop hooks the
  loop calls through this object; `hook_states`: each one's host-side state (`init_loop_state`), by name.
  """

  eval_rng: jax.Array
  surgery_rng: jax.Array
  hooks: tuple = ()
  hook_states: dict[str, Any] = dataclasses.field(default_factory=dict)
  updates: int = 0
  updates_due: float = 0.0
  episodes: int = 0
  recent_returns: list[float] = dataclasses.field(default_factory=list)
  eval_means: list[tuple[int, float]] = dataclasses.field(default_factory=list)
  flops: compute_cost.FlopsCounter | None = None  # The training FLOPs so far (train rows' train_flops).

  @classmethod
  def start(cls, config, eval_rng: jax.Array, surgery_rng: jax.Array) -> "SeedLoop":
    """A new run's: the config's interventions with their initial loop states."""
    hooks = interventions.learner_hooks(config)
    return cls(eval_rng=eval_rng, surgery_rng=surgery_rng, hooks=hooks,
               hook_states={h.name: h.init_loop_state() for h in hooks},
               flops=compute_cost.FlopsCounter(config.learner.batch_size))

  # -- the loop hooks, in the interventions' order ----------------------------------------------------------

  def replay_ratio(self, config, frames: int) -> float:
    """The replay ratio in force: the config's, as each intervention's `replay_ratio` hook passes it on."""
    ratio = config.learner.replay_ratio
    for hook in self.hooks:
      ratio = hook.replay_ratio(self.hook_states[hook.name], frames, ratio)
    return ratio

  def take_updates_due(self, config, frames: int) -> int:
    """The whole updates due after an iteration's agent steps at `frames` (every env's step at the replay ratio
    in force); the fraction carries over (`updates_due`), and `updates` counts them."""
    self.updates_due += config.env.num_envs * self.replay_ratio(config, frames)
    due = 0
    while self.updates_due >= 1.0:
      due += 1
      self.updates_due -= 1.0
    self.updates += due
    return due

  def sample(self, replay, count: int, batch_size: int) -> dict[str, Any]:
    """The iteration's `count` learner batches [count, B, …]: the first sampler hook's, else uniform."""
    for hook in self.hooks:
      batches = hook.sample(self.hook_states[hook.name], replay, count, batch_size)
      if batches is not None:
        return batches
    return replay.sample_many(count, batch_size)

  def on_metrics(self, frames: int, row: dict[str, float], agent) -> list[tuple[str, Any, dict[str, Any]]]:
    """Every intervention's reaction to a plasticity-metrics row: [(event name, surgery or None, fields)]."""
    actions = []
    for hook in self.hooks:
      self.hook_states[hook.name], more = hook.on_metrics(self.hook_states[hook.name], frames, row, agent)
      actions.extend(more)
    return actions

  def before_surgery(self, name: str, state, batch, agent) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every intervention's look at a surgery about to be applied: (fields for its event, event rows first)."""
    fields, rows = {}, []
    for hook in self.hooks:
      self.hook_states[hook.name], more, new_rows = hook.on_surgery(self.hook_states[hook.name], name, state,
                                                                    batch, agent)
      fields.update(more)
      rows.extend(new_rows)
    return fields, rows

  # -- counters, saved and restored ---------------------------------------------------------------------------

  def add_episode(self, episode_return: float) -> None:
    self.recent_returns = (self.recent_returns + [episode_return])[-RECENT_RETURNS:]
    self.episodes += 1

  def restore(self, loop: dict[str, Any], keys: dict[str, jax.Array], *, resumed: bool) -> None:
    """Carries on from a checkpoint's loop dict and keys (load "all"); `resumed` (this run's own checkpoint,
    not a reincarnation's source) also restores the interventions' loop states (a key the checkpoint lacks:
    the initial state)."""
    self.eval_rng, self.surgery_rng = keys["eval"], keys["surgery"]
    self.updates, self.updates_due, self.episodes = loop["updates"], loop["updates_due"], loop["episodes"]
    self.recent_returns = list(loop["recent_returns"])
    self.eval_means = [(int(f), float(r)) for f, r in loop["eval_means"]]
    # The FLOPs of the updates before it (a checkpoint without them: counted from here on, at today's structure).
    self.flops.train_flops, self.flops.counted_updates = float(loop.get("train_flops") or 0.0), self.updates
    if resumed:
      for hook in self.hooks:
        saved = (loop.get(hook.checkpoint_key) if hook.checkpoint_key else
                 (loop.get("interventions") or {}).get(hook.name))
        if saved:
          self.hook_states[hook.name] = hook.loop_state_from_dict(saved)

  def to_dict(self, frames: int, cadence: Cadence, info_sum: dict[str, float] | None, info_count: int,
              wall_seconds: float) -> dict[str, Any]:
    """The checkpoint's loop dict (LOOP_KEYS)."""
    out = {"frames": frames, "updates": self.updates, "episodes": self.episodes, "updates_due": self.updates_due,
           **cadence.to_dict(), "recent_returns": self.recent_returns, "eval_means": self.eval_means,
           "info_count": info_count, "info_sum": info_sum, "wall_seconds": wall_seconds,
           "train_flops": self.flops.train_flops,
           **{key: None for key in LEGACY_KEYS}, "interventions": {}}
    for hook in self.hooks:
      saved = hook.loop_state_to_dict(self.hook_states[hook.name])
      if hook.checkpoint_key:
        out[hook.checkpoint_key] = saved
      elif saved is not None:
        out["interventions"][hook.name] = saved
    return {k: out[k] for k in LOOP_KEYS}


def keys_dict(act_rng: jax.Array, seed_loop: SeedLoop) -> dict[str, jax.Array]:
  """The RNG keys a checkpoint saves, by name."""
  return {"act": act_rng, "eval": seed_loop.eval_rng, "surgery": seed_loop.surgery_rng}
