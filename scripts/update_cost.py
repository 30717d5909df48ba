r"""Where one learner update's time goes, part by part, for a preset's network (CPU or GPU).

  python scripts/update_cost.py --config=configs/drq_eps.py --repeats=30

Times (median ms of --repeats calls, each jitted on its own and blocked on): the batch augmentation; the online
forward pass on obs; the same with its backward pass (the gradient); the two next_obs forward passes (the Double
DQN selector and the target net); the optimizer step; and the whole jitted update, as agents/dqn.py runs it. The
parts overlap nothing, so their sum minus the whole is what one fused update saves. Also the act step (batch of
env.num_envs). On 2 busy cores the figures move by ±20 %: compare parts within one run.

  python scripts/update_cost.py --config=configs/dqn.py --injections=0,1,2,3 --stacked --repeats=40

With --injections, instead: the whole jitted update after each of these numbers of injections (the config's
injection.target, same widths; one update between injections), as a table of ms/update (median and min of
--repeats calls), the ratio to the first count, and the update's FLOPs (XLA's count, compute_cost.py: what
the load does not move) with their ratio. --stacked adds the same update with the injected branches of
equal shapes run as one stacked computation (jax.vmap over their params stacked on a leading axis; networks.py
runs one call per branch), its calls interleaved with the plain ones (the same load for both), and whether one
update from the same state is bit for bit the plain one.
"""

import dataclasses

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
from plasticity_rl import compute_cost
from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl import surgery
from plasticity_rl import testing
from plasticity_rl.agents import dqn

_CONFIG = config_flags.DEFINE_config_file("config", os.path.join(cli.CONFIGS_DIR, "drq_eps.py"),
                                          "Preset whose network is timed.")
_REPEATS = flags.DEFINE_integer("repeats", 30, "Timed calls per part (after one compile call).")
_ACTIONS = flags.DEFINE_integer("num_actions", 18, "Actions of the game (18: Boxing).")
_INJECTIONS = flags.DEFINE_list("injections", [], "Time the whole update after these numbers of injections instead "
                                "(e.g. 0,1,2,3).")
_STACKED = flags.DEFINE_bool("stacked", False, "With --injections: also the update with the branches stacked.")


def _time(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def _times(fns, args, repeats: int) -> list[list[float]]:
  """ms of each fn(*args), the calls interleaved (fn 0, fn 1, …, fn 0, …) so that a changing load hits all alike."""
  for fn in fns:
    jax.block_until_ready(fn(*args))
  times = [[] for _ in fns]
  for _ in range(repeats):
    for fn, out in zip(fns, times):
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      out.append(1e3 * (time.perf_counter() - start))
  return times


@dataclasses.dataclass(frozen=True)
class StackedBranches(networks.QNetwork):
  """QNetwork whose injected branches of one shape run as one computation: their params stacked, the branch
  vmapped (the growth case, branches of several shapes, runs one computation per shape)."""

  def _run_branches(self, branches, x, start):
    groups: dict[object, list[int]] = {}
    for i, branch in enumerate(branches):
      shapes = jax.tree.map(lambda a: a.shape, branch)
      groups.setdefault((jax.tree.structure(branch), tuple(jax.tree.leaves(shapes))), []).append(i)
    outs = [None] * len(branches)
    for members in groups.values():
      if len(members) == 1:
        outs[members[0]] = self._run_branch(branches[members[0]], x, start)
        continue
      stack = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[branches[i] for i in members])
      stacked = jax.vmap(lambda b: self._run_branch(b, x, start))(stack)
      for j, i in enumerate(members):
        outs[i] = stacked[j]
    return outs


def injection_costs(config, num_actions: int, injections: list[int], repeats: int,
                    stacked: bool) -> list[dict[str, object]]:
  """A row per injection count: ms/update (median, min) of the plain update and, with `stacked`, the stacked one."""
  agent = dqn.make_agent(config, num_actions)
  stacked_agent = dataclasses.replace(agent, network=StackedBranches(
      **{f.name: getattr(agent.network, f.name) for f in dataclasses.fields(networks.QNetwork)}))
  state = agent.init(jax.random.key(0))
  batch = {k: jnp.asarray(v) for k, v in testing.random_batch(0, config.learner.batch_size, agent.obs_shape,
                                                                num_actions).items()}
  layers = surgery.resolve_target(agent.network, config.injection.target)
  rows, done = [], 0
  for k in sorted(injections):
    while done < k:
      state = surgery.inject(state, jax.random.key(done + 1), network=agent.network, optimizer=agent.optimizer,
                             obs_shape=agent.obs_shape, layers=layers)
      state, _ = agent.update(state, batch)
      done += 1
    fns = [agent.update, stacked_agent.update] if stacked and k else [agent.update]
    times = _times(fns, (state, batch), repeats)
    row = {"injections": k, "ms": statistics.median(times[0]), "min_ms": min(times[0]), "load": os.getloadavg()[0],
           "gflops": compute_cost.update_cost(agent, state, config.learner.batch_size).update_flops / 1e9}
    if len(times) > 1:
      plain, other = agent.update(state, batch)[0], stacked_agent.update(state, batch)[0]
      row.update(stacked_ms=statistics.median(times[1]), stacked_min_ms=min(times[1]),
                 stacked_bit_for_bit=all(bool(jnp.array_equal(a, b)) for a, b in
                                         zip(jax.tree.leaves(plain), jax.tree.leaves(other))))
    rows.append(row)
  return rows


def print_injection_costs(config, rows: list[dict[str, object]], repeats: int) -> None:
  base, base_flops = rows[0]["ms"], rows[0]["gflops"]
  print(f"{config.variant}: width {config.network.width}, hidden {config.network.hidden}, batch "
        f"{config.learner.batch_size}, target {config.injection.target!r}, {jax.devices()[0].platform}, "
        f"{repeats} calls (median, min)")
  stacked = any("stacked_ms" in r for r in rows)
  head = "| injections | ms/update (median) | min | ratio to first | GFLOP/update | ratio |"
  print(head + (" stacked: ms (median) | min | stacked / plain | bit for bit |" if stacked else "") + " load (1 min) |")
  print("|---:" * (6 + 4 * stacked) + "|---:|")
  for r in rows:
    line = (f"| {r['injections']} | {r['ms']:.1f} | {r['min_ms']:.1f} | {r['ms'] / base:.2f} | {r['gflops']:.3f} | "
            f"{r['gflops'] / base_flops:.2f} |")
    if stacked:
      line += (f" {r['stacked_ms']:.1f} | {r['stacked_min_ms']:.1f} | {r['stacked_ms'] / r['ms']:.2f} | "
               f"{'yes' if r['stacked_bit_for_bit'] else 'no'} |" if "stacked_ms" in r else " | | | |")
    print(line + f" {r['load']:.1f} |", flush=True)


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
  if _INJECTIONS.value:
    rows = injection_costs(config, _ACTIONS.value, [int(k) for k in _INJECTIONS.value], _REPEATS.value,
                           _STACKED.value)
    print_injection_costs(config, rows, _REPEATS.value)
    return
  rows = measure(config, _ACTIONS.value, _REPEATS.value)
  whole = rows["whole update (agents/dqn.py)"]
  print(f"{config.variant}: batch {config.learner.batch_size}, {jax.devices()[0].platform}, "
        f"{_REPEATS.value} calls per part (median)")
  for name, ms in rows.items():
    print(f"  {name:<40} {ms:8.2f} ms  {100 * ms / whole:5.1f} % of the update")
  print(f"  → {1e3 / (whole + rows[f'act (batch {config.env.num_envs})']):.1f} agent steps/s at one update per step")


if __name__ == "__main__":
  cli.run(main, __name__)
