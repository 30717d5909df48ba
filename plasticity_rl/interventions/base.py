"""The interface of an intervention: one class with no-op hooks, registered by name.

An intervention is one module of this package: a subclass of `Hooks` that overrides the hooks it needs, owns
its config section (`config_section`, `validate`, `inactive`) and registers itself with `@register("<name>")`
(the package imports it, so it is found by name: `HOOKS["<name>"]`). `from_config` returns an instance when
the config switches it on, None when off; an instance is a frozen dataclass (hashable: the agent is a static
argument of its jitted update), and every hook it does not override is a no-op, so an intervention that is
off, or that overrides nothing of a kind, leaves that part of the run bit for bit as without it.

Learner hooks, traced inside the jitted update (agents/dqn.py); `DQNAgent.hooks` is the tuple of the
config's instances (`interventions.learner_hooks`), called in that order:

  init_state(state) -> state
      `DQNAgent.init`: add the intervention's own arrays to the TrainState, under
      `state.intervention_state[name]` (a dict of names to pytrees of arrays; None when no intervention has
      any). Checkpointed with the state (checkpoint.py saves every non-None TrainState field).
  transform_batch(state, batch) -> (state, batch)
      First in every update: e.g. DrQ's augmentation (interventions/augment.py), drawing from `state.rng`.
  loss_term(trainable, state, batch) -> (term or None, info)
      Inside the loss, after the TD loss: `term` is added to what is differentiated (w.r.t. `trainable`),
      `info` to the update's info (the logged "loss" stays the TD loss); e.g. L2 / L2-init
      (interventions/regularizer.py).
  after_update(state, info) -> (state, info)
      Last in every update, after the optimizer step and the target-network copy: a per-update step
      (e.g. Hare & Tortoise's EMA of the tortoise, interventions/hare_tortoise.py).
  acting_params(state, params) -> params
      The params that act (ε-greedy) and are evaluated; `DQNAgent.acting_params(state)` folds the hooks
      over `state.params`. The loop must act and evaluate with `agent.acting_params(state)`.

Loop hooks, on the host (the loop calls them; none may be traced):

  surgeries(config, agent) -> [(frames, surgery)]
      Scheduled surgery: `interventions.make_schedule` adds them to the schedule, and the loop applies each
      `surgery(state, rng, batch) -> state` at the first iteration at or past its frames, with a fresh key and
      a replay batch of learner.batch_size (None before learning starts), and logs it as an event (name =
      the intervention's registered name).
  init_loop_state() -> loop_state
      The intervention's host-side state (None if it has none), built once per run and seed (from the seed's
      config) and saved in the checkpoint's loop dict: under `checkpoint_key` (the three loop interventions
      that predate this package keep their old keys) or under "interventions"/<name>, as
      `loop_state_to_dict(loop_state)` (JSON; None: nothing saved) gives it; a resume reads it back with
      `loop_state_from_dict`. The hooks below take it and return the new one.
  on_metrics(loop_state, frames, row, agent) -> (loop_state, [(event name, surgery or None, event fields)])
      Reaction to metrics: after every plasticity-metrics row (`row`: metric name -> float, after learning
      starts), per seed. Each returned action is applied at once, in the interventions' order, as a scheduled
      surgery is (None: an event row only, e.g. a changed replay ratio); a metric-triggered injection is one
      of these (interventions/injection_trigger.py).
  on_surgery(loop_state, name, state, batch, agent) -> (loop_state, event fields, event rows)
      Before every surgery (scheduled or triggered) named `name` is applied to `state` (`batch`: its replay
      batch, None before learning starts): fields to add to its event row, and event rows written before it
      (expansion's dormant count and review, interventions/expansion_review.py).
  replay_ratio(loop_state, frames, replay_ratio) -> replay_ratio
      The replay ratio in force at `frames` (updates per agent step), given the config's (or the previous
      hook's) ratio; each iteration's updates are due from it (interventions/replay_ratio.py).
  sample(loop_state, replay, count, batch_size) -> batches or None
      The sampler: the iteration's `count` learner batches, {key: [count, batch_size, …]} as
      `ReplayBuffer.sample_many` returns them, or None to leave them to the next hook (at the end: the
      loop's uniform `replay.sample_many(count, batch_size)`).

train.py calls them through each seed's `loop_state.SeedLoop` and knows no intervention by name; it acts and
evaluates with `agent.acting_params(state)`.
"""

from typing import Any, Callable, ClassVar

from plasticity_rl.interventions import scheduling

# name -> Hooks subclass, in registration order (the order of `learner_hooks`).
HOOKS: dict[str, type["Hooks"]] = {}


class Hooks:
  """An intervention with every hook a no-op (module docstring). Subclasses are frozen dataclasses."""

  name: ClassVar[str] = ""  # Set by `register`.
  section: ClassVar[str | None] = None  # The config section it owns (config.<section>), None: none of its own.

  # -- config ---------------------------------------------------------------------------------------------------

  @classmethod
  def config_section(cls):
    """The defaults of config.<section> (an ml_collections.ConfigDict, off), or None. base_config adds it."""
    return None

  @classmethod
  def validate(cls, config) -> None:
    """ValueError whose message starts with the field ("<section>.<field>: …") when the config cannot work."""

  @classmethod
  def inactive(cls, config) -> list[tuple[bool, tuple[str, ...], str]]:
    """(off, fields or sections, why): when `off`, those compute nothing in `config` (config.refuse_inactive
    refuses them set away from their defaults); `why` starts with the switch's dotted name, e.g.
    "x.enabled is False" (the switch itself stays free)."""
    del config
    return []

  @classmethod
  def from_config(cls, config) -> "Hooks | None":
    """The instance the config asks for (validated), or None when it is off."""
    del config
    return None

  # -- learner: traced in the jitted update ---------------------------------------------------------------------

  def init_state(self, state):
    return state

  def transform_batch(self, state, batch):
    return state, batch

  def loss_term(self, trainable, state, batch):
    del trainable, state, batch
    return None, {}

  def after_update(self, state, info):
    return state, info

  def acting_params(self, state, params):
    del state
    return params

  # -- loop: on the host ----------------------------------------------------------------------------------------

  def surgeries(self, config, agent) -> list[tuple[int, scheduling.Intervention]]:
    del config, agent
    return []

  checkpoint_key: ClassVar[str | None] = None  # The loop dict's key of its loop state; None: under "interventions".

  def init_loop_state(self) -> Any:
    return None

  def loop_state_to_dict(self, loop_state) -> Any:
    """The loop state as JSON (the checkpoint's loop dict); None: nothing to save."""
    return loop_state

  def loop_state_from_dict(self, saved) -> Any:
    return saved

  def on_metrics(self, loop_state, frames: int, row: dict[str, float], agent):
    del frames, row, agent
    return loop_state, []

  def on_surgery(self, loop_state, name: str, state, batch, agent):
    del name, state, batch, agent
    return loop_state, {}, []

  def replay_ratio(self, loop_state, frames: int, replay_ratio: float) -> float:
    del loop_state, frames
    return replay_ratio

  def sample(self, loop_state, replay, count: int, batch_size: int):
    del loop_state, replay, count, batch_size
    return None


def register(name: str) -> Callable:
  """Registers a Hooks subclass in HOOKS, or a surgery builder `(config, agent) -> [(frames, surgery)]` in
  INTERVENTIONS, under `name`."""
  def decorator(obj):
    if isinstance(obj, type) and issubclass(obj, Hooks):
      if name in HOOKS and HOOKS[name] is not obj:
        raise ValueError(f"an intervention named {name!r} is registered already ({HOOKS[name].__module__})")
      obj.name = name
      HOOKS[name] = obj
    else:
      scheduling.INTERVENTIONS[name] = obj
    return obj
  return decorator


def get(name: str) -> type[Hooks]:
  """The intervention registered as `name`; ValueError listing the known ones."""
  if name not in HOOKS:
    raise ValueError(f"unknown intervention {name!r}; known: {sorted(HOOKS)}")
  return HOOKS[name]


def learner_hooks(config) -> tuple[Hooks, ...]:
  """The instances of every registered intervention the config switches on, in registration order."""
  return tuple(hook for cls in HOOKS.values() if (hook := cls.from_config(config)) is not None)


def config_sections() -> dict[str, Any]:
  """{section: defaults} of the registered interventions that own a section."""
  return {cls.section: section for cls in HOOKS.values()
          if cls.section and (section := cls.config_section()) is not None}


def validate(config) -> None:
  """Every registered intervention's `validate`; ValueError starting with the field."""
  for cls in HOOKS.values():
    cls.validate(config)


def inactive(config) -> list[tuple[bool, tuple[str, ...], str]]:
  """Every registered intervention's `inactive` entries."""
  return [entry for cls in HOOKS.values() for entry in cls.inactive(config)]
