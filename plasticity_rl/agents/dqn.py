"""Double DQN (van Hasselt et al. 2016): loss, jitted update and act, agent state.

The learner knows nothing of envs, replay or the loop: it takes batches
({obs, action, reward, discount, next_obs}, with `discount` = γ^k or 0 already
folded in by the replay) and returns a new state. It knows no intervention by
name either: `DQNAgent.hooks` is the config's interventions (interventions.base.Hooks),
whose learner hooks the update calls (batch transforms, loss terms, a per-update step)
and `init` / `acting_params` fold in. No hooks: the plain Double DQN update.
"""

import dataclasses
import functools
from typing import Any

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax

from plasticity_rl import interventions
from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl import unit_masks
from plasticity_rl.interventions import augment as augment_lib
from plasticity_rl.interventions import regularizer as regularizer_lib

OPTIMIZERS = ("rmsprop_dqn_zoo", "adam_dopamine")
# TD losses, each the batch mean of a per-transition term:
# - "dqn_zoo": DQN Zoo's double_q agent (dqn_zoo/double_q/agent.py): rlax.clip_gradient(td, ±grad_error_bound),
#   then rlax.l2_loss (½td²), then the mean. The bound clips each sample's gradient *after* the 1/B of the
#   mean, so at B = 32 and bound 1/32 it equals mean Huber δ = 1, and in general mean Huber δ = B·bound.
# - "huber": mean Huber loss with δ = huber_delta (Dopamine's full_rainbow/DrQ loss, `losses.huber_loss`).
# - "mse": mean td² (Dopamine's `losses.mse_loss`, no ½; its JAX DQN preset, dqn.gin).
LOSSES = ("dqn_zoo", "huber", "mse")


class TrainState(flax.struct.PyTreeNode):
  """Everything the learner owns. `params` and `target_params` share one structure."""

  params: networks.Params
  target_params: networks.Params
  opt_state: optax.OptState
  num_updates: jax.Array  # int32 scalar.
  rng: jax.Array
  init_params: networks.Params  # θ₀: the params at initialization (distance from init, L2-init).
  # Expansion (expansion.py): {hidden layer: float32 [units]}, 1 = active; None (default) = every unit, and the
  # update is exactly as without the field.
  masks: Any = None
  # Interventions' own arrays (interventions.base.Hooks.init_state): {intervention name: pytree}, e.g.
  # Hare & Tortoise's tortoise; None (default) when none has any: the update is exactly as without the field,
  # and a checkpoint without it restores as before.
  intervention_state: Any = None


def double_q_td_error(q_tm1: jax.Array, a_tm1: jax.Array, r_t: jax.Array, discount_t: jax.Array,
                      q_t_value: jax.Array, q_t_selector: jax.Array) -> jax.Array:
  """One transition: the online net picks a' (selector), the target net values it."""
  chex.assert_rank([q_tm1, a_tm1, r_t, discount_t, q_t_value, q_t_selector], [1, 0, 0, 0, 1, 1])
  target = r_t + discount_t * q_t_value[jnp.argmax(q_t_selector)]
  return jax.lax.stop_gradient(target) - q_tm1[a_tm1]


def q_learning_td_error(q_tm1: jax.Array, a_tm1: jax.Array, r_t: jax.Array, discount_t: jax.Array,
                        q_t: jax.Array) -> jax.Array:
  """One transition of (non-double) Q-learning: the target net both picks and values a' (rlax.q_learning)."""
  chex.assert_rank([q_tm1, a_tm1, r_t, discount_t, q_t], [1, 0, 0, 0, 1])
  return jax.lax.stop_gradient(r_t + discount_t * jnp.max(q_t)) - q_tm1[a_tm1]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def clip_gradient(x: jax.Array, bound: float) -> jax.Array:
  """Identity forward; the incoming gradient clipped to ±bound (rlax.clip_gradient)."""
  return x


clip_gradient.defvjp(lambda x, bound: (x, None), lambda bound, _, g: (jnp.clip(g, -bound, bound),))


def td_loss(td: jax.Array, kind: str, *, huber_delta: float = 1.0, grad_error_bound: float = 1 / 32) -> jax.Array:
  """The batch loss of TD errors [B] (see LOSSES)."""
  if kind == "dqn_zoo":
    return jnp.mean(0.5 * jnp.square(clip_gradient(td, grad_error_bound)))
  if kind == "huber":
    return jnp.mean(optax.huber_loss(td, delta=huber_delta))
  if kind == "mse":
    return jnp.mean(jnp.square(td))
  raise ValueError(f"unknown loss {kind!r}; allowed: {LOSSES}")


def make_optimizer(learner_config) -> optax.GradientTransformation:
  """DQN Zoo's centered RMSProp or Dopamine's Adam; learning_rate overrides the preset's."""
  name, lr = learner_config.optimizer, learner_config.learning_rate
  if name == "rmsprop_dqn_zoo":
    return optax.rmsprop(lr or 2.5e-4, decay=0.95, eps=0.01 / 32**2, centered=True)
  if name == "adam_dopamine":
    return optax.adam(lr or 6.25e-5, eps=1.5e-4)
  raise ValueError(f"unknown optimizer {name!r}; allowed: {OPTIMIZERS}")


_KEEP = object()  # DQNAgent's `regularizer` / `augment` keywords not given: `hooks` as passed.


def _hook_of(hooks, kind):
  return next((h for h in hooks if isinstance(h, kind)), None)


def _with_hook(hooks, kind, hook):
  """`hooks` with the hook of class `kind` replaced by `hook` (in place; appended if absent; removed if None)."""
  out, placed = [], False
  for h in hooks:
    if isinstance(h, kind):
      if hook is not None and not placed:
        out.append(hook)
      placed = True
    else:
      out.append(h)
  if hook is not None and not placed:
    out.append(hook)
  return tuple(out)


@dataclasses.dataclass(frozen=True)
class DQNAgent:
  """Pure functions of the learner; `update` and `act` are jitted once per tree structure."""

  network: networks.QNetwork
  optimizer: optax.GradientTransformation
  obs_shape: tuple[int, ...]
  num_actions: int
  target_update_period_updates: int
  loss_kind: str = "huber"  # LOSSES.
  huber_delta: float = 1.0  # With loss_kind "huber".
  grad_error_bound: float = 1 / 32  # With loss_kind "dqn_zoo".
  double_q: bool = True  # False: Q-learning's max over the target net (Dopamine's JAX DQN).
  # The interventions' learner hooks (interventions.learner_hooks(config)), called in this order.
  hooks: tuple[interventions.Hooks, ...] = ()
  # Keywords kept from before the hooks (tests and scripts build agents with them); each sets or removes
  # (None / "none") the hook of its kind in `hooks`. Read back through the properties of the same names.
  regularizer: dataclasses.InitVar[Any] = _KEEP  # An interventions.regularizer.Regularizer, or None.
  augment: dataclasses.InitVar[Any] = _KEEP  # An augmentation kind (augment.AUGMENTATIONS), "none" for none.

  def __post_init__(self, regularizer, augment):
    hooks = self.hooks
    if regularizer is not _KEEP:
      hooks = _with_hook(hooks, regularizer_lib.Regularizer, regularizer)
    if augment is not _KEEP:
      hooks = _with_hook(hooks, augment_lib.Augment, None if augment == "none" else augment_lib.Augment(augment))
    object.__setattr__(self, "hooks", tuple(hooks))

  def init(self, rng: jax.Array) -> TrainState:
    init_rng, rng = jax.random.split(rng)
    params = self.network.init(init_rng, self.obs_shape)
    state = TrainState(
        params=params,
        target_params=jax.tree.map(jnp.copy, params),
        opt_state=params_tree.init_opt_state(self.optimizer, params),
        num_updates=jnp.zeros((), jnp.int32),
        rng=rng,
        init_params=jax.tree.map(jnp.copy, params),
    )
    for hook in self.hooks:  # Interventions' own arrays (e.g. Hare & Tortoise's tortoise).
      state = hook.init_state(state)
    return state

  def acting_params(self, state: TrainState) -> networks.Params:
    """The params that act and are evaluated: `state.params` unless an intervention says otherwise."""
    params = state.params
    for hook in self.hooks:
      params = hook.acting_params(state, params)
    return params

  def loss(self, trainable: networks.Params, state: TrainState, batch: dict[str, jax.Array]):
    params = params_tree.with_trainable(state.params, trainable)
    q_tm1 = self.network.apply(params, batch["obs"])
    q_t_value = self.network.apply(state.target_params, batch["next_obs"])
    if self.double_q:
      # The selector only feeds an argmax: a forward pass of its own, so the backward pass covers `obs` alone
      # (through one concatenated obs/next_obs pass it ran over both halves, one of them all zeros).
      q_t_selector = self.network.apply(jax.lax.stop_gradient(params), batch["next_obs"])
      td = jax.vmap(double_q_td_error)(q_tm1, batch["action"], batch["reward"], batch["discount"],
                                       q_t_value, q_t_selector)
    else:
      td = jax.vmap(q_learning_td_error)(q_tm1, batch["action"], batch["reward"], batch["discount"], q_t_value)
    loss = td_loss(td, self.loss_kind, huber_delta=self.huber_delta, grad_error_bound=self.grad_error_bound)
    info = {"loss": loss, "q_mean": jnp.mean(q_tm1), "q_max": jnp.max(q_tm1), "td_abs_mean": jnp.mean(jnp.abs(td))}
    total = loss
    for hook in self.hooks:  # Loss terms (L2, L2-init): info["loss"] stays the TD loss; the gradient is of the sum.
      term, extra = hook.loss_term(trainable, state, batch)
      if term is not None:
        total = total + term
        info.update(extra)
    return total, info

  def _update(self, state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
    """Batch transforms, one gradient step on the trainable params, the periodic hard target copy, then the
    interventions' per-update steps."""
    for hook in self.hooks:  # Batch transforms (DrQ): fresh draws every update, from the state's own key.
      state, batch = hook.transform_batch(state, batch)
    trainable, keep = params_tree.trainable(state.params), None
    if state.masks is not None:  # Expansion: the loss sees only active units; masked entries get no update.
      keep = unit_masks.weight_masks(self.network, trainable, state.masks)
      trainable = unit_masks.apply(trainable, keep)
    grads, info = jax.grad(self.loss, has_aux=True)(trainable, state, batch)
    if keep is not None:
      grads = unit_masks.apply(grads, keep)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, trainable)
    trainable = optax.apply_updates(trainable, updates)
    params = params_tree.with_trainable(state.params, trainable if keep is None else unit_masks.apply(trainable, keep))
    num_updates = state.num_updates + 1
    target_params = optax.periodic_update(params, state.target_params, num_updates,
                                          self.target_update_period_updates)
    info["grad_norm"] = optax.tree.norm(grads)
    state = state.replace(params=params, target_params=target_params, opt_state=opt_state, num_updates=num_updates)
    for hook in self.hooks:  # Per-update steps (Hare & Tortoise's EMA), after the step and the target copy.
      state, info = hook.after_update(state, info)
    return state, info

  # One update, jitted; `state` is not donated, so a caller may keep it (tests, probes, before/after comparisons).
  update = jax.jit(_update, static_argnums=0)

  @functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
  def update_at(self, state: TrainState, batches: dict[str, jax.Array],
                index: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
    """`update` on batch `index` of batches [K, B, …], on the device already: the K updates of a loop iteration
    share one transfer. Bit for bit `update`; `state` is donated (its buffers hold the result, so the caller
    must not read the arrays it passed in; `owned` copies a state to donate).

    Not folded in here (docs/performance.md): the running info sum (added inside this program, XLA rounds the
    q_mean sum otherwise: 1 ulp in a golden smoke run), nor one lax.scan over the K batches (not bit for bit K
    updates on CPU).
    """
    return self._update(state, jax.tree.map(lambda x: x[index], batches))

  @functools.partial(jax.jit, static_argnums=0)
  def act(self, params: networks.Params, obs: jax.Array, rng: jax.Array,
          epsilon: jax.Array) -> tuple[jax.Array, jax.Array]:
    """ε-greedy actions for a batch of observations; returns (actions, next rng)."""
    rng, explore_rng, action_rng = jax.random.split(rng, 3)
    greedy = jnp.argmax(self.network.apply(params, obs), axis=-1)
    batch = obs.shape[0]
    random = jax.random.randint(action_rng, (batch,), 0, self.num_actions)
    explore = jax.random.uniform(explore_rng, (batch,)) < epsilon
    return jnp.where(explore, random, greedy).astype(jnp.int32), rng


DQNAgent.regularizer = property(lambda self: _hook_of(self.hooks, regularizer_lib.Regularizer),
                                doc="The regularizer hook (interventions/regularizer.py), or None.")
DQNAgent.augment = property(lambda self: getattr(_hook_of(self.hooks, augment_lib.Augment), "kind", "none"),
                            doc='The augmentation kind of the augment hook (interventions/augment.py), or "none".')


def owned(tree):
  """A copy of every array of `tree`: a tree to donate to `DQNAgent.update_at`.

  Donating deletes the arrays passed in, and XLA refuses a call that donates one buffer twice; a state from
  outside the update (an intervention, a checkpoint) may hold one array in two places (params and target) or
  share one with something kept elsewhere.
  """
  return jax.tree.map(jnp.copy, tree)


def make_agent(config, num_actions: int, obs_shape: tuple[int, ...] = (84, 84, 4)) -> DQNAgent:
  return DQNAgent(
      network=networks.make_network(config.network, num_actions),
      optimizer=make_optimizer(config.learner),
      obs_shape=obs_shape,
      num_actions=num_actions,
      target_update_period_updates=config.learner.target_update_period_updates,
      loss_kind=config.learner.get("loss", "huber"),
      huber_delta=config.learner.get("huber_delta") or 1.0,
      grad_error_bound=config.learner.get("grad_error_bound") or 1 / 32,
      double_q=config.learner.get("double_q", True),
      hooks=interventions.learner_hooks(config),
  )


def linear_epsilon(frames: int, *, start: float, end: float, decay_frames: int, offset_frames: int) -> float:
  """ε decays linearly from `start` to `end` over `decay_frames` after `offset_frames`."""
  fraction = min(max(frames - offset_frames, 0) / max(decay_frames, 1), 1.0)
  return start + fraction * (end - start)

