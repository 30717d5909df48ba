"""Pure surgeries on the agent's pytree: plasticity injection and its helpers.

Plasticity injection (Nikishin et al., NeurIPS 2023): the current branch θ (by
default the head, 3136→512→A) is frozen, a fresh branch θ'₁ takes its trainable
slot and an identical copy θ'₂ is frozen, so the network computes
h_θ(φ(x)) + h_θ'₁(φ(x)) − h_θ'₂(φ(x)) — the same Q at the moment of injection,
with as many trainable parameters as before. The target network gets the same
surgery (its own θ frozen, the same fresh θ'₁/θ'₂), so it is unchanged too.
Every function here takes and returns pytrees and never mutates its input.

The paper's ablations (config.injection, docs/interventions.md): `freeze_encoder` (also freeze the layers
before the branch), `all_trainable` (h_θ, θ'₁ and θ'₂ all receive gradients), `stop_frozen_grad` (no gradient
from the frozen branches into the layers before them), and the target ("head", "last_k:K").
"""

import dataclasses

import jax
import optax

from plasticity_rl import interventions
from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl.agents import dqn

Params = networks.Params


def resolve_target(network: networks.QNetwork, target: str) -> tuple[str, ...]:
  """"head" | "last_k:K" | "name,name,…" (a suffix of the layers) -> layer names."""
  names = network.layer_names
  if target in ("head", "encoder"):
    chosen = tuple(s.name for s in network.specs if s.part == target)
  elif target.startswith("last_k:"):
    k = int(target.split(":", 1)[1])
    if not 1 <= k <= len(names):
      raise ValueError(f"injection target {target!r}: k must be in 1..{len(names)}")
    chosen = names[-k:]
  else:
    chosen = tuple(n.strip() for n in target.split(",") if n.strip())
    unknown = [n for n in chosen if n not in names]
    if unknown:
      raise ValueError(f"injection target {target!r}: unknown layers {unknown}; layers: {list(names)}")
  if not chosen or chosen != names[len(names) - len(chosen):]:
    raise ValueError(f"injection target {target!r} must name a suffix of the layers {list(names)} "
                     "(the injected branch runs on the features before its first layer)")
  return chosen


def inject(state: dqn.TrainState, rng: jax.Array, *, network: networks.QNetwork,
           optimizer: optax.GradientTransformation, obs_shape: tuple[int, ...], layers: tuple[str, ...],
           hidden: int | None = None, reset_optimizer: bool = False, freeze_encoder: bool = False,
           all_trainable: bool = False, stop_frozen_grad: bool = False) -> dqn.TrainState:
  """Plasticity injection on `layers` (a suffix of the network); pure and jit-able.

  hidden: units of the fresh branch's hidden dense layers (dynamic growth); None
    keeps the current width. The fresh branch's output layer keeps the action count.
  reset_optimizer: re-init the optimizer statistics of the injected slot (the
    default keeps them, as the paper's ablation suggests).
  freeze_encoder: also freeze every layer before the branch (an ablation).
  all_trainable: h_θ and θ'₂ stay trainable beside θ'₁ (an ablation; every injection of the tree must set it).
    Their optimizer statistics start fresh (optax's init: Adam's μ = ν = 0 with the shared step count, so their
    first steps are larger than a warmed-up Adam's; RMSProp's ν = μ = 0, as a new network's); the slot θ'₁
    keeps or resets its statistics as `reset_optimizer` says.
  stop_frozen_grad: the frozen branches get the features without their gradient (an ablation): the layers
    before the branch learn from the trainable branch alone.
  """
  not_trainable = [n for n in layers if n not in params_tree.trainable_parts(state.params)]
  if not_trainable:
    raise ValueError(f"cannot inject frozen layers {not_trainable}")
  injected = params_tree.injected_layers(state.params)
  if injected and injected != tuple(layers):
    raise ValueError(f"earlier injections replaced {injected}; "
                     f"all injections of a run must target the same layers, got {layers}")
  widths = None
  if hidden is not None:
    widths = {n: hidden for n in layers if network.spec(n).kind == "dense" and not network.is_output(n)}
  fresh = network.init_branch(rng, state.params, layers, obs_shape, widths)

  def surgery(params: Params) -> Params:
    own = params_tree.main_layers(params)
    old_branch = {n: own[n] for n in layers}
    params = params_tree.add_injection(params_tree.replace_trainable(params, fresh), old_branch, fresh,
                                       trainable=all_trainable, stop_gradient=stop_frozen_grad)
    if freeze_encoder:
      params = params_tree.freeze_all_but(params, layers)
    return params

  params = surgery(state.params)
  opt_state = params_tree.transfer_opt_state(optimizer, state.opt_state, params_tree.trainable(params),
                                 reset=lambda names: reset_optimizer and bool(names & set(layers)))
  return state.replace(params=params, target_params=surgery(state.target_params), opt_state=opt_state)


@dataclasses.dataclass(frozen=True)
class InjectionPlan:
  """config.injection resolved against a network: what `inject` is called with."""

  frames: tuple[int, ...]
  layers: tuple[str, ...]
  hidden: tuple[int | None, ...]
  reset_optimizer: bool
  freeze_encoder: bool
  all_trainable: bool = False
  stop_frozen_grad: bool = False


def injection_plan(config, network: networks.QNetwork) -> InjectionPlan:
  """Checks config.injection; ValueError naming the field when it cannot work."""
  c = config.injection
  frames = interventions.checked_frames(config, "injection", what="injection")
  if list(frames) != sorted(frames):
    raise ValueError(f"injection.frames {frames} must be in increasing order")
  hidden = tuple(int(h) for h in c.hidden)
  if hidden and len(hidden) != len(frames):
    raise ValueError(f"injection.hidden {hidden} must have one entry per injection frame {frames} (or be empty)")
  if any(h <= 0 for h in hidden):
    raise ValueError(f"injection.hidden {hidden}: units must be > 0")
  layers = resolve_target(network, c.target)
  if hidden and all(network.is_output(name) for name in layers):
    raise ValueError(f"injection.hidden {hidden}: the target {c.target!r} is the output layer alone, which has no "
                     "hidden units to grow; target a suffix with a hidden layer (e.g. 'head') or drop injection.hidden")
  all_trainable, stop_frozen_grad = bool(c.all_trainable), bool(c.stop_frozen_grad)
  if all_trainable and stop_frozen_grad:
    raise ValueError("injection.stop_frozen_grad acts on frozen heads, and injection.all_trainable leaves none")
  if stop_frozen_grad and layers[0] == network.layer_names[0]:
    raise ValueError(f"injection.stop_frozen_grad: the target {c.target!r} covers every layer, so no layer before "
                     "the branch could get the frozen heads' gradient")
  if stop_frozen_grad and c.freeze_encoder:
    raise ValueError("injection.stop_frozen_grad with injection.freeze_encoder: the frozen layers before the branch "
                     "get no gradient anyway")
  if all_trainable and config.get("expansion", {}).get("enabled", False):
    raise ValueError("injection.all_trainable with expansion: the unit masks cover the main path, not the branches")
  if all_trainable and config.get("regularizer", {}).get("kind", "none") == "l2_init":
    raise ValueError("injection.all_trainable with regularizer.kind 'l2_init': trainable branches have no θ₀")
  return InjectionPlan(frames, layers, hidden or (None,) * len(frames), bool(c.reset_optimizer),
                       bool(c.freeze_encoder), all_trainable, stop_frozen_grad)


def injection(agent: dqn.DQNAgent, plan: InjectionPlan, hidden: int | None = None) -> interventions.Intervention:
  """The intervention that injects what `plan` targets (a `hidden`-unit head when given)."""
  return lambda state, rng, batch: inject(
      state, rng, network=agent.network, optimizer=agent.optimizer, obs_shape=agent.obs_shape,
      layers=plan.layers, hidden=hidden, reset_optimizer=plan.reset_optimizer, freeze_encoder=plan.freeze_encoder,
      all_trainable=plan.all_trainable, stop_frozen_grad=plan.stop_frozen_grad)


@interventions.register("injection")
def build_injection(config, agent: dqn.DQNAgent):
  plan = injection_plan(config, agent.network)
  return [(f, injection(agent, plan, h)) for f, h in zip(plan.frames, plan.hidden)]

