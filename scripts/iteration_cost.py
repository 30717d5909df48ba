r"""The K updates of one loop iteration, three ways, timed in alternating rounds (CPU or GPU).

  python scripts/iteration_cost.py --config=configs/dqn.py:cpu --k=1,2,4 --rounds=5

K = the updates one iteration runs (num_envs × replay ratio: 1 for configs/dqn.py:cpu and drq_eps, 2 for the
benchmark's full-width column). Per K, each round times --iterations iterations of:
  before   K × (replay.sample → agent.update on the numpy batch → train.accumulate): the loop up to issue 13;
  now      replay.sample_many(K) → one device_put → K × (agent.update_at, the state donated → train.accumulate):
           what train.py runs, bit for bit the same results as `before`;
  scan     replay.sample_many(K) → one device_put → one jitted lax.scan of the K updates: one dispatch per
           iteration, but not bit for bit `before` on CPU (docs/performance.md), so the loop does not use it.
The three alternate round by round (the machine may be shared); printed: median updates/s over rounds and
the min–max spread, and now/before, scan/before per round (median, min–max).
"""

import functools
import os
import statistics
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags

from plasticity_rl import cli
from plasticity_rl import replay as replay_lib
from plasticity_rl import train
from plasticity_rl.agents import dqn

_CONFIG = config_flags.DEFINE_config_file("config", os.path.join(cli.CONFIGS_DIR, "dqn.py:cpu"), "Preset.")
_FULL = flags.DEFINE_bool("full_width", False, "The full-width Nature CNN, batch 32 (profile_loop.full_width).")
_K = flags.DEFINE_list("k", ["1", "2"], "Updates per iteration to time.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Alternating rounds per K.")
_ITERATIONS = flags.DEFINE_integer("iterations", 20, "Iterations per way per round.")
_ACTIONS = flags.DEFINE_integer("num_actions", 18, "Actions of the game.")


def filled_replay(num_envs: int, steps: int = 400) -> replay_lib.ReplayBuffer:
  replay = replay_lib.ReplayBuffer(num_envs * steps, num_envs, seed=0)
  rng = np.random.default_rng(0)
  for t in range(steps):
    replay.add(rng.integers(0, 256, (num_envs, 84, 84), dtype=np.uint8), rng.integers(0, 4, num_envs),
               rng.normal(size=num_envs), np.zeros(num_envs, bool), np.full(num_envs, t % 100 == 99),
               np.full(num_envs, t % 100 == 0))
  return replay


@functools.partial(jax.jit, static_argnums=0, donate_argnums=(1, 3))
def scan_updates(agent: dqn.DQNAgent, state, batches, info_sum):
  def body(carry, batch):
    state, total = carry
    state, info = agent._update(state, batch)  # pylint: disable=protected-access
    return (state, jax.tree.map(jnp.add, total, info)), None
  return jax.lax.scan(body, (state, info_sum), batches)[0]


def run_before(agent, replay, state, info_sum, k, b, iterations):
  for _ in range(iterations):
    for _ in range(k):
      state, info = agent.update(state, replay.sample(b))
      info_sum = info if info_sum is None else train.accumulate(info_sum, info)
  return state, info_sum


def run_now(agent, replay, state, info_sum, k, b, iterations):
  for _ in range(iterations):
    batches = jax.device_put(replay.sample_many(k, b))
    for index in range(k):
      state, info = agent.update_at(state, batches, index)
      info_sum = train.accumulate(info_sum, info)
  return state, info_sum


def run_scan(agent, replay, state, info_sum, k, b, iterations):
  for _ in range(iterations):
    state, info_sum = scan_updates(agent, state, jax.device_put(replay.sample_many(k, b)), info_sum)
  return state, info_sum


def measure(config, k: int, rounds: int, iterations: int, num_actions: int) -> dict[str, list[float]]:
  agent = dqn.make_agent(config, num_actions)
  replay = filled_replay(config.env.num_envs)
  b = config.learner.batch_size
  ways = {"before": run_before, "now": run_now, "scan": run_scan}
  states = {}
  for name, run in ways.items():  # Compile each way (and warm it).
    state = dqn.owned(agent.init(jax.random.key(0)))
    _, info = agent.update(state, replay.sample(b))
    states[name] = jax.block_until_ready(run(agent, replay, state, info, k, b, 2))
  rates = {name: [] for name in ways}
  for _ in range(rounds):
    for name, run in ways.items():
      start = time.perf_counter()
      states[name] = jax.block_until_ready(run(agent, replay, *states[name], k, b, iterations))
      rates[name].append(k * iterations / (time.perf_counter() - start))
  return rates


def main(argv):
  cli.no_arguments(argv)
  config = _CONFIG.value
  if _FULL.value:
    config = config.copy_and_resolve_references()
    config.network.width, config.learner.batch_size = 1.0, 32
  print(f"{config.variant}: width {config.network.width:g}, batch {config.learner.batch_size}, "
        f"{jax.devices()[0].platform}, {_ROUNDS.value} rounds × {_ITERATIONS.value} iterations per way; "
        f"load average {os.getloadavg()[0]:.1f}")
  for k in [int(x) for x in _K.value]:
    rates = measure(config, k, _ROUNDS.value, _ITERATIONS.value, _ACTIONS.value)
    cells = [f"{name} {statistics.median(r):7.1f} upd/s ({min(r):.1f}–{max(r):.1f})" for name, r in rates.items()]
    for name in ("now", "scan"):
      ratio = [x / y for x, y in zip(rates[name], rates["before"])]
      cells.append(f"{name}/before {statistics.median(ratio):.3f} ({min(ratio):.3f}–{max(ratio):.3f})")
    print(f"  K={k}: " + " | ".join(cells), flush=True)
  print(f"  load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  cli.run(main, __name__)
