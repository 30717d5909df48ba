"""Reports replay memory for 1M transitions at 84x84 and times `sample(32)`.

Usage: .venv/bin/python scripts/replay_memory.py [--num_envs=8] [--fill=50000] [--repeats=2000]
"""

import time

from absl import flags
import numpy as np

from plasticity_rl import cli
from plasticity_rl.replay import ReplayBuffer

_NUM_ENVS = flags.DEFINE_integer("num_envs", 8, "Parallel envs the buffer is laid out for.", lower_bound=1)
_FILL = flags.DEFINE_integer("fill", 50_000, "Transitions for the timing.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 2000, "sample(32) calls timed.", lower_bound=1)

CAPACITY = 1_000_000


def _fill(buffer: ReplayBuffer, steps: int, rng: np.random.Generator) -> None:
  """Adds `steps` vectorized steps of random frames with ~1/1000 episode ends."""
  num_envs = buffer.num_envs
  last = np.zeros(num_envs, bool)
  first = np.ones(num_envs, bool)
  for _ in range(steps):
    frame = rng.integers(0, 256, size=(num_envs, 84, 84), dtype=np.uint8)
    terminal = rng.random(num_envs) < 1e-3
    last = terminal | (rng.random(num_envs) < 1e-4)
    buffer.add(frame, rng.integers(0, 18, num_envs), rng.normal(size=num_envs),
               terminal, last, first)
    first = last


def main(argv) -> None:
  cli.no_arguments(argv)
  args = flags.FLAGS
  rng = np.random.default_rng(0)

  buffer = ReplayBuffer(CAPACITY, args.num_envs)
  _fill(buffer, 16, rng)
  stacked = 84 * 84 * 4 * 2
  print(f"1M-transition buffer, {args.num_envs} envs, 84x84, stack 4:")
  print(f"  nbytes               {buffer.nbytes:,} B = {buffer.nbytes / 1e9:.3f} GB "
        f"({buffer.nbytes / 2**30:.3f} GiB)")
  print(f"  bytes/transition     {buffer.bytes_per_transition:,.1f} B")
  print(f"  stacked obs+next_obs {stacked:,} B/transition = {stacked * CAPACITY / 1e9:.1f} GB "
        f"({stacked / buffer.bytes_per_transition:.1f}x more)")
  del buffer

  filled = ReplayBuffer(CAPACITY, args.num_envs)
  _fill(filled, args.fill // args.num_envs, rng)
  for n_step in (1, 3):
    buffer = ReplayBuffer(CAPACITY, args.num_envs, n_step=n_step)
    buffer.load_state_dict(filled.state_dict())
    buffer.sample(32)
    start = time.perf_counter()
    for _ in range(args.repeats):
      buffer.sample(32)
    elapsed = (time.perf_counter() - start) / args.repeats
    print(f"sample(32), {len(buffer):,} transitions stored, n_step={n_step}: "
          f"{elapsed * 1e6:.0f} us/batch")


if __name__ == "__main__":
  cli.run(main, __name__)
