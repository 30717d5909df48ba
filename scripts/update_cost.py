r"""Where one learner update's time goes, part by part, for a preset's network (CPU or GPU).

  python scripts/update_cost.py --config=configs/drq_eps.py --repeats=30

Times (median ms of --repeats calls, each jitted on its own and blocked on): the batch augmentation; the online
forward pass on obs; the same with its backward pass (the gradient); the two next_obs forward passes (the Double
DQN selector and the target net); the optimizer step; and the whole jitted update, as agents/dqn.py runs it. The
parts overlap nothing, so their sum minus the whole is what one fused update saves. Also the act step (batch of
env.num_envs). On 2 busy cores the figures move by ±20 %: compare parts within one run.
"""

import os
import statistics
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import config_flags

from plasticity_rl import augment
from plasticity_rl import cli
from plasticity_rl import params_tree
from plasticity_rl import testing
from plasticity_rl.agents import dqn

_CONFIG = config_flags.DEFINE_config_file("config", os.path.join(cli.CONFIGS_DIR, "drq_eps.py"),
                                          "Preset whose network is timed.")
_REPEATS = flags.DEFINE_integer("repeats", 30, "Timed calls per part (after one compile call).")
_ACTIONS = flags.DEFINE_integer("num_actions", 18, "Actions of the game (18: Boxing).")


def _time(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def measure(config, num_actions: int, repeats: int) -> dict[str, float]:
  agent = dqn.make_agent(config, num_actions)
  state = agent.init(jax.random.key(0))
  batch = {k: jnp.asarray(v) for k, v in testing.random_batch(0, config.learner.batch_size, agent.obs_shape,
                                                                num_actions).items()}
  params, trainable = state.params, params_tree.trainable(state.params)
  net = agent.network
  q_of = lambda t, obs: net.apply(params_tree.with_trainable(params, t), obs)
  loss = lambda t: jnp.mean(q_of(t, batch["obs"]))
  out = {
      "augment": _time(jax.jit(lambda r, b: augment.augment_batch(agent.augment, r, b)), jax.random.key(1), batch,
                       repeats=repeats) if agent.augment != "none" else 0.0,
      "online forward (obs)": _time(jax.jit(q_of), trainable, batch["obs"], repeats=repeats),
      "online forward + backward": _time(jax.jit(jax.grad(loss)), trainable, repeats=repeats),
      "selector + target forward (next_obs)": _time(
          jax.jit(lambda p, tp, o: (net.apply(p, o), net.apply(tp, o))), params, state.target_params,
          batch["next_obs"], repeats=repeats),
      "optimizer step": _time(jax.jit(lambda g, s, t: agent.optimizer.update(g, s, t)),
                              jax.tree.map(jnp.ones_like, trainable), state.opt_state, trainable, repeats=repeats),
      "whole update (agents/dqn.py)": _time(agent.update, state, batch, repeats=repeats),
  }
  obs = jnp.zeros((config.env.num_envs, *agent.obs_shape), jnp.uint8)
  out[f"act (batch {config.env.num_envs})"] = _time(agent.act, params, obs, jax.random.key(2), 0.01,
                                                     repeats=repeats)
  return out


def main(argv):
  cli.no_arguments(argv)
  config = _CONFIG.value
  rows = measure(config, _ACTIONS.value, _REPEATS.value)
  whole = rows["whole update (agents/dqn.py)"]
  print(f"{config.variant}: batch {config.learner.batch_size}, {jax.devices()[0].platform}, "
        f"{_REPEATS.value} calls per part (median)")
  for name, ms in rows.items():
    print(f"  {name:<40} {ms:8.2f} ms  {100 * ms / whole:5.1f} % of the update")
  print(f"  → {1e3 / (whole + rows[f'act (batch {config.env.num_envs})']):.1f} agent steps/s at one update per step")


if __name__ == "__main__":
  cli.run(main, __name__)
