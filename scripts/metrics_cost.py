"""What the plasticity metrics cost next to the update step (a benchmark, not a test).

  .venv/bin/python scripts/metrics_cost.py      # smoke and Nature-CNN sizes, probe 256, batch 32
  .venv/bin/python scripts/metrics_cost.py --period_frames=100000 --replay_ratio=0.25 --probe=256

For each network (smoke: width 0.25 / hidden 32; full: the Nature CNN, 512
hidden; full after one injection of the head) it times, after compilation, the
jitted update step on a batch and `metrics.plasticity_metrics` on a probe
batch (min and median of --repeats alternating calls, each waited for: the
min is the figure to trust on a shared machine), and prints their ratio and
the slowdown implied at the period:
updates between calls = period_frames / 4 × replay_ratio, slowdown =
t_metrics / (updates × t_update). That counts the update steps only — the loop
also acts and steps the envs — so the real slowdown is smaller.
"""

import json
import statistics
import time

from absl import flags
import jax
import ml_collections
import numpy as np

from plasticity_rl import cli
from plasticity_rl import metrics
from plasticity_rl import networks
from plasticity_rl import surgery
from plasticity_rl import testing
from plasticity_rl.agents import dqn

_SIZES = ("smoke", "full", "full_injected")
flags.DEFINE_integer("batch", 32, "Update batch size.", lower_bound=1)
flags.DEFINE_integer("probe", 256, "Probe batch size of the metrics.", lower_bound=1)
flags.DEFINE_integer("period_frames", 100_000, "Frames between metrics calls.", lower_bound=1)
flags.DEFINE_float("replay_ratio", 0.25, "Updates per agent step.", lower_bound=0)
flags.DEFINE_integer("repeats", 5, "Timed calls of each.", lower_bound=1)
flags.DEFINE_list("sizes", list(_SIZES), f"Networks to time, comma-separated, of {', '.join(_SIZES)}.")
flags.register_validator("sizes", lambda sizes: sizes and set(sizes) <= set(_SIZES),
                         f"must be names of {', '.join(_SIZES)}")
flags.DEFINE_string("json", "", "Also write the rows to this JSON file.")

OBS_SHAPE = (84, 84, 4)
NUM_ACTIONS = 18
FRAME_SKIP = 4


def random_batch(seed: int, size: int) -> dict[str, np.ndarray]:
  return testing.random_batch(seed, size, OBS_SHAPE, NUM_ACTIONS)


def timed(fns: dict, repeats: int) -> dict[str, dict[str, float]]:
  """{name: {first (incl. compilation), min, median}} in seconds; the calls alternate, so load hits all alike."""
  out = {}
  for name, fn in fns.items():
    start = time.perf_counter()
    jax.block_until_ready(fn())
    out[name] = {"first": time.perf_counter() - start, "times": []}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      out[name]["times"].append(time.perf_counter() - start)
  return {name: {"first": t["first"], "min": min(t["times"]), "median": statistics.median(t["times"])}
          for name, t in out.items()}


def measure(name: str, agent: dqn.DQNAgent, state: dqn.TrainState, init, args) -> dict:
  batch, probe = random_batch(0, args.batch), random_batch(1, args.probe)
  t = timed({"update": lambda: agent.update(state, batch),
             "metrics": lambda: metrics.plasticity_metrics(agent, state, probe, init)}, args.repeats)
  updates = args.period_frames / FRAME_SKIP * args.replay_ratio
  row = {"network": name, "params": networks.count_params(state.params), "updates_between_calls": updates,
         "metrics_first_call_s": t["metrics"]["first"]}
  for stat in ("min", "median"):
    ratio = t["metrics"][stat] / t["update"][stat]
    row[stat] = {"update_ms": 1e3 * t["update"][stat], "metrics_ms": 1e3 * t["metrics"][stat], "ratio": ratio,
                 "slowdown_pct": 100 * ratio / updates}
  return row


def main(argv):
  cli.no_arguments(argv)
  args = flags.FLAGS
  optimizer = dqn.make_optimizer(ml_collections.ConfigDict({"optimizer": "rmsprop_dqn_zoo", "learning_rate": None}))
  sizes = {"smoke": (0.25, 32), "full": (1.0, 512), "full_injected": (1.0, 512)}
  rows = []
  for name in args.sizes:
    width, hidden = sizes[name]
    network = networks.QNetwork(networks.nature_cnn_specs(NUM_ACTIONS, width=width, hidden=hidden))
    agent = dqn.DQNAgent(network, optimizer, OBS_SHAPE, NUM_ACTIONS, target_update_period_updates=7_500)
    state = agent.init(jax.random.key(0))
    init = state.params
    if name.endswith("_injected"):
      state = surgery.inject(state, jax.random.key(1), network=network, optimizer=optimizer, obs_shape=OBS_SHAPE,
                             layers=surgery.resolve_target(network, "head"))
    rows.append(measure(name, agent, state, init, args))
    r = rows[-1]
    for stat in ("min", "median"):
      m = r[stat]
      print(f"{name:>14} {stat:>6}: {r['params']:>10,} params | update {m['update_ms']:7.1f} ms (batch {args.batch}) | "
            f"metrics {m['metrics_ms']:7.1f} ms (probe {args.probe}) | ratio {m['ratio']:5.1f} | every "
            f"{args.period_frames:,} frames = {r['updates_between_calls']:,.0f} updates -> slowdown "
            f"{m['slowdown_pct']:.3f} %", flush=True)
    print(f"{name:>14}  first metrics call (compiles): {r['metrics_first_call_s']:.1f} s", flush=True)
  print(f"backend: {jax.default_backend()}, devices: {jax.devices()}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"args": {k: args[k].value for k in ("batch", "probe", "period_frames", "replay_ratio", "repeats",
                                                     "sizes")}, "rows": rows}, f, indent=1)


if __name__ == "__main__":
  cli.run(main, __name__)
