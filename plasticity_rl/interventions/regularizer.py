"""Weight regularizers added to the learner's loss: L2 and L2-init, with λ schedules (a loss-term hook).

    l2        λ_t ‖θ‖²        over every trainable leaf (kernels, biases, LayerNorm params)
    l2_init   λ_t ‖θ − θ₀‖²   θ₀ = each trainable layer's own initialization (`reference`)

so the term's gradient is 2 λ_t θ, resp. 2 λ_t (θ − θ₀) (L2-init: Kumar, Marklund, Van Roy 2023,
"Maintaining Plasticity in Continual Learning via Regenerative Regularization"). λ_t follows a schedule
in frames (the CS285 report's variants, as issue 12 quotes them):

    constant     λ
    incremental  λ₀ + (λ − λ₀) · min(frames / ramp_frames, 1): a linear ramp from start_coef λ₀ (default 0)
    periodic     λ for on_frames (2M), then 0 for off_frames (0.4M), repeating from frame 0

The report's own text and code are not in the reference store we searched; its 2M-on / 0.4M-off frames and a
configurable starting λ are taken from issue 12. A CS285 (Berkeley, Fall 2023) plasticity project that is
stored, arvindrajaraman/plasticity-rl (cs285/agents/dqn_agent.py), adds λ · d^i · ‖θ_i‖₂ (a norm, not its
square, per parameter tensor i, with a layer discount d) for "weight_mag" and ‖θ_i − θ_i,0‖₂ for
"regenerative_reg"; we keep the squared norm of Kumar et al. over every trainable leaf, with no layer discount.
`coef` (λ) and `ramp_frames` have no published DQN value: placeholders to tune.

The jitted update knows only its update count, so frames are estimated from it:
frames ≈ start_frames + num_updates · 4 / replay_ratio, with start_frames =
replay.learning_starts_frames (the first update). The loop starts updating at the
first multiple of 4 × num_envs frames at or past that, so the estimate is early by
less than one loop iteration (4 × num_envs frames).

The intervention is `Regularizer` (base.Hooks: `loss_term`), registered as "regularizer"; it owns
config.regularizer (`regularizer_config`, `validate`). `plasticity_rl.regularizers` re-exports this module.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl.interventions import base

KINDS = ("none", "l2", "l2_init")
SCHEDULES = ("constant", "incremental", "periodic")

Params = networks.Params


def coefficient(schedule: str, coef: float, frames, *, ramp_frames: int = 0, on_frames: int = 0,
                off_frames: int = 0, start_coef: float = 0.0) -> jax.Array:
  """λ_t at `frames` (a number or a traced scalar) under `schedule`; float32."""
  frames = jnp.asarray(frames, jnp.float32)
  if schedule == "constant":
    return jnp.full((), coef, jnp.float32)
  if schedule == "incremental":
    return (start_coef + (coef - start_coef) * jnp.clip(frames / ramp_frames, 0.0, 1.0)).astype(jnp.float32)
  if schedule == "periodic":
    on = jnp.mod(frames, on_frames + off_frames) < on_frames
    return jnp.where(on, coef, 0.0).astype(jnp.float32)
  raise ValueError(f"unknown regularizer schedule {schedule!r}; allowed: {SCHEDULES}")


def reference(params: Params, init_params: Params) -> Params:
  """θ₀ for every leaf of the trainable params (same structure): its layer's own initialization.

  Main-path layers of an injected suffix were re-initialized at the latest injection:
  their θ₀ is that fresh init, kept frozen as the branch minus_{-1}. Every other
  trainable layer's θ₀ is `init_params` (TrainState.init_params) at the same path
  (params_tree.init_layers).
  """
  refs = params_tree.init_layers(params, init_params)
  parts = params_tree.trainable_parts(params)

  def ref_of(name: str, layer: Params) -> Params:
    ref = refs[name]
    if ref is None or jax.tree.structure(ref) != jax.tree.structure(layer) or any(
        r.shape != p.shape for r, p in zip(jax.tree.leaves(ref), jax.tree.leaves(layer))):
      raise ValueError(f"l2_init: no initialization with the shapes of trainable layer {parts[name]}/{name}")
    return ref

  return params_tree.map_layers(ref_of, params_tree.trainable(params))


def penalty(trainable: Params, ref: Params | None = None) -> jax.Array:
  """‖θ − ref‖² summed over all leaves (ref None: ‖θ‖²)."""
  diffs = jax.tree.leaves(trainable) if ref is None else [
      p - r for p, r in zip(jax.tree.leaves(trainable), jax.tree.leaves(ref), strict=True)]
  return sum(jnp.sum(jnp.square(d.astype(jnp.float32))) for d in diffs)


@base.register("regularizer")
@dataclasses.dataclass(frozen=True)
class Regularizer(base.Hooks):
  """A loss term λ_t · penalty; hashable (a static field of the jitted DQNAgent)."""

  section = "regularizer"

  kind: str  # "l2" or "l2_init".
  coef: float
  schedule: str = "constant"
  ramp_frames: int = 0
  on_frames: int = 0
  off_frames: int = 0
  start_frames: int = 0  # Frames at the first update (replay.learning_starts_frames).
  frames_per_update: float = 16.0  # 4 / replay_ratio.
  start_coef: float = 0.0  # λ₀: where the incremental ramp starts.

  def frames(self, num_updates: jax.Array) -> jax.Array:
    """The frame count estimated from the update count (module docstring)."""
    return self.start_frames + jnp.asarray(num_updates, jnp.float32) * self.frames_per_update

  def coefficient(self, frames) -> jax.Array:
    return coefficient(self.schedule, self.coef, frames, ramp_frames=self.ramp_frames, on_frames=self.on_frames,
                       off_frames=self.off_frames, start_coef=self.start_coef)

  def penalty(self, trainable: Params, params: Params, init_params: Params) -> jax.Array:
    """The unscaled term for `trainable` (θ) of the tree `params` (for the injected branches' θ₀)."""
    if self.kind == "l2":
      return penalty(trainable)
    if self.kind == "l2_init":
      return penalty(trainable, reference(params, init_params))
    raise ValueError(f"unknown regularizer kind {self.kind!r}; allowed: {KINDS}")

  def loss_term(self, trainable: Params, state, batch):
    """λ_t · penalty of `trainable`, with `reg_penalty` and `reg_coef` for the update's info."""
    del batch
    coef = self.coefficient(self.frames(state.num_updates))
    penalty_value = self.penalty(trainable, state.params, state.init_params)
    return coef * penalty_value, {"reg_penalty": penalty_value, "reg_coef": coef}

  # config.regularizer is built and checked by this module's functions (below).
  config_section = classmethod(lambda cls: regularizer_config())
  validate = classmethod(lambda cls, config: validate(config) if "regularizer" in config else None)
  from_config = classmethod(lambda cls, config: from_config(config))


def regularizer_config() -> ml_collections.ConfigDict:
  """Fields of config.regularizer, defaults off."""
  c = ml_collections.ConfigDict()
  c.kind = "none"  # "none", "l2" (λ‖θ‖²) or "l2_init" (λ‖θ − θ₀‖²).
  c.coef = 1e-5  # λ. Unverified against the papers: tune per setting.
  c.schedule = "constant"  # "constant", "incremental" (ramp over ramp_frames) or "periodic" (on/off).
  c.start_coef = 0.0  # incremental: λ at frame 0, ramping to coef (the CS285 report's configurable start).
  c.ramp_frames = 10_000_000  # incremental: frames for λ to ramp from start_coef to coef. Unverified.
  c.on_frames = 2_000_000  # periodic: frames with λ = coef (the CS285 report's 2M) …
  c.off_frames = 400_000  # … then frames with λ = 0 (its 0.4M), repeating.
  return c


def validate(config) -> None:
  """ValueError naming the field when config.regularizer cannot work."""
  c = config.regularizer
  if c.kind not in KINDS:
    raise ValueError(f"regularizer.kind: unknown {c.kind!r}; allowed: {list(KINDS)}")
  if c.schedule not in SCHEDULES:
    raise ValueError(f"regularizer.schedule: unknown {c.schedule!r}; allowed: {list(SCHEDULES)}")
  if c.coef < 0:
    raise ValueError(f"regularizer.coef: must be ≥ 0, got {c.coef!r}")
  start_coef = c.get("start_coef", 0.0)
  if start_coef < 0:
    raise ValueError(f"regularizer.start_coef: must be ≥ 0, got {start_coef!r}")
  if c.kind != "none" and start_coef != 0 and c.schedule != "incremental":
    raise ValueError(f"regularizer.start_coef: is used only by the incremental schedule (this run's is "
                     f"{c.schedule!r}): unset it or set regularizer.schedule='incremental'")
  if c.kind != "none" and c.schedule == "incremental" and not c.ramp_frames > 0:
    raise ValueError(f"regularizer.ramp_frames: must be > 0 for the incremental schedule, got {c.ramp_frames!r}")
  if c.kind != "none" and c.schedule == "periodic" and not (c.on_frames > 0 and c.off_frames >= 0):
    raise ValueError(f"regularizer.on_frames/off_frames: the periodic schedule needs on_frames > 0 and "
                     f"off_frames ≥ 0, got {c.on_frames!r}/{c.off_frames!r}")


def from_config(config) -> Regularizer | None:
  """config.regularizer (with replay.learning_starts_frames, learner.replay_ratio) -> Regularizer; None when off."""
  if "regularizer" not in config or config.regularizer.kind == "none":
    return None
  validate(config)
  from plasticity_rl.envs import atari  # pylint: disable=g-import-not-at-top  (its FRAME_SKIP; envpool, so late)
  c = config.regularizer
  return Regularizer(kind=c.kind, coef=float(c.coef), schedule=c.schedule, ramp_frames=int(c.ramp_frames),
                     on_frames=int(c.on_frames), off_frames=int(c.off_frames),
                     start_frames=int(config.replay.learning_starts_frames),
                     frames_per_update=atari.FRAME_SKIP / float(config.learner.replay_ratio),
                     start_coef=float(c.get("start_coef", 0.0)))
