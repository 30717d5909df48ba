"""Double DQN on Atari, DQN Zoo "double_q" settings; `:arg` picks a scale (config.SCALES).

  --config=configs/dqn.py         paper scale: 200M frames, 1M replay (GPU).
  --config=configs/dqn.py:cpu     a real ~10-minute run on 2 CPU cores (the README's demo adds
                                  one injection half-way: scripts/run_demo.sh).
  --config=configs/dqn.py:smoke   seconds, for tests.

No intervention is on: sweeps add them as variants (configs/variants.py).
"""

from plasticity_rl import config as config_lib


def get_config(arg: str | None = None):
  return config_lib.apply_scale(config_lib.base_config(), arg)
