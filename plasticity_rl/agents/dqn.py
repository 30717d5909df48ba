"""Double DQN (van Hasselt et al. 2016): loss, jitted update and act, agent state.

The learner knows nothing of envs, replay or the loop: it takes batches
({obs, action, reward, discount, next_obs}, with `discount` = γ^k or 0 already
folded in by the replay) and returns a new state.
"""

import dataclasses
import functools
from typing import Any

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax

from plasticity_rl import augment as augment_lib
from plasticity_rl import networks
from plasticity_rl import regularizers
from plasticity_rl import unit_masks

OPTIMIZERS = ("rmsprop_dqn_zoo", "adam_dopamine")


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


def double_q_td_error(q_tm1: jax.Array, a_tm1: jax.Array, r_t: jax.Array, discount_t: jax.Array,
                      q_t_value: jax.Array, q_t_selector: jax.Array) -> jax.Array:
  """One transition: the online net picks a' (selector), the target net values it."""
  chex.assert_rank([q_tm1, a_tm1, r_t, discount_t, q_t_value, q_t_selector], [1, 0, 0, 0, 1, 1])
  target = r_t + discount_t * q_t_value[jnp.argmax(q_t_selector)]
  return jax.lax.stop_gradient(target) - q_tm1[a_tm1]


def make_optimizer(learner_config) -> optax.GradientTransformation:
  """DQN Zoo's centered RMSProp or Dopamine's Adam; learning_rate overrides the preset's."""
  name, lr = learner_config.optimizer, learner_config.learning_rate
  if name == "rmsprop_dqn_zoo":
    return optax.rmsprop(lr or 2.5e-4, decay=0.95, eps=0.01 / 32**2, centered=True)
  if name == "adam_dopamine":
    return optax.adam(lr or 6.25e-5, eps=1.5e-4)
  raise ValueError(f"unknown optimizer {name!r}; allowed: {OPTIMIZERS}")


@dataclasses.dataclass(frozen=True)
class DQNAgent:
  """Pure functions of the learner; `update` and `act` are jitted once per tree structure."""

  network: networks.QNetwork
  optimizer: optax.GradientTransformation
  obs_shape: tuple[int, ...]
  num_actions: int
  target_update_period_updates: int
  huber_delta: float = 1.0
  regularizer: regularizers.Regularizer | None = None  # A weight penalty added to the loss (L2, L2-init).
  augment: str = "none"  # Learner-batch augmentation (augment.AUGMENTATIONS), e.g. DrQ's "random_shift".

  def init(self, rng: jax.Array) -> TrainState:
    init_rng, rng = jax.random.split(rng)
    params = self.network.init(init_rng, self.obs_shape)
    return TrainState(
        params=params,
        target_params=jax.tree.map(jnp.copy, params),
        opt_state=self.optimizer.init(params["trainable"]),
        num_updates=jnp.zeros((), jnp.int32),
        rng=rng,
        init_params=jax.tree.map(jnp.copy, params),
    )

  def loss(self, trainable: networks.Params, state: TrainState, batch: dict[str, jax.Array]):
    params = {**state.params, "trainable": trainable}
    q_tm1 = self.network.apply(params, batch["obs"])
    # The selector only feeds an argmax: a forward pass of its own, so the backward pass covers `obs` alone
    # (through one concatenated obs/next_obs pass it ran over both halves, one of them all zeros).
    q_t_selector = self.network.apply(jax.lax.stop_gradient(params), batch["next_obs"])
    q_t_value = self.network.apply(state.target_params, batch["next_obs"])
    td = jax.vmap(double_q_td_error)(q_tm1, batch["action"], batch["reward"], batch["discount"],
                                     q_t_value, q_t_selector)
    loss = jnp.mean(optax.huber_loss(td, delta=self.huber_delta))
    info = {"loss": loss, "q_mean": jnp.mean(q_tm1), "q_max": jnp.max(q_tm1), "td_abs_mean": jnp.mean(jnp.abs(td))}
    if self.regularizer is not None:  # info["loss"] stays the TD loss; the gradient is of the sum.
      coef = self.regularizer.coefficient(self.regularizer.frames(state.num_updates))
      penalty = self.regularizer.penalty(trainable, state.params, state.init_params)
      info.update(reg_penalty=penalty, reg_coef=coef)
      return loss + coef * penalty, info
    return loss, info

  @functools.partial(jax.jit, static_argnums=0)
  def update(self, state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
    """One gradient step on the trainable params, then the periodic hard target copy."""
    if self.augment != "none":  # Fresh draws every update, from the state's own key.
      rng, augment_rng = jax.random.split(state.rng)
      batch = augment_lib.augment_batch(self.augment, augment_rng, batch)
      state = state.replace(rng=rng)
    trainable, keep = state.params["trainable"], None
    if state.masks is not None:  # Expansion: the loss sees only active units; masked entries get no update.
      keep = unit_masks.weight_masks(self.network, trainable, state.masks)
      trainable = unit_masks.apply(trainable, keep)
    grads, info = jax.grad(self.loss, has_aux=True)(trainable, state, batch)
    if keep is not None:
      grads = unit_masks.apply(grads, keep)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, trainable)
    trainable = optax.apply_updates(trainable, updates)
    params = {**state.params, "trainable": trainable if keep is None else unit_masks.apply(trainable, keep)}
    num_updates = state.num_updates + 1
    target_params = optax.periodic_update(params, state.target_params, num_updates,
                                          self.target_update_period_updates)
    info["grad_norm"] = optax.tree.norm(grads)
    return state.replace(params=params, target_params=target_params, opt_state=opt_state,
                         num_updates=num_updates), info

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


def make_agent(config, num_actions: int, obs_shape: tuple[int, ...] = (84, 84, 4)) -> DQNAgent:
  return DQNAgent(
      network=networks.make_network(config.network, num_actions),
      optimizer=make_optimizer(config.learner),
      obs_shape=obs_shape,
      num_actions=num_actions,
      target_update_period_updates=config.learner.target_update_period_updates,
      huber_delta=config.learner.get("huber_delta", 1.0),
      regularizer=regularizers.from_config(config),
      augment=config.learner.get("augment", "none"),
  )


def linear_epsilon(frames: int, *, start: float, end: float, decay_frames: int, offset_frames: int) -> float:
  """ε decays linearly from `start` to `end` over `decay_frames` after `offset_frames`."""
  fraction = min(max(frames - offset_frames, 0) / max(decay_frames, 1), 1.0)
  return start + fraction * (end - start)

