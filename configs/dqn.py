"""Double DQN on Atari, DQN Zoo "double_q" settings; `:arg` picks a scale (config.SCALES).

  --config=configs/dqn.py         paper scale: 200M frames, 1M replay (GPU).
  --config=configs/dqn.py:cpu     a real ~5-minute run on 2 CPU cores.
  --config=configs/dqn.py:demo    the README's demo (scripts/run_demo.sh): :cpu with one injection
                                  half-way, at 200k of 400k frames.
  --config=configs/dqn.py:smoke   seconds, for tests.

Apart from :demo no intervention is on: sweeps add them as variants (configs/variants.py).
"""

from plasticity_rl import config as config_lib


def get_config(arg: str | None = None):
  if arg == "demo":
    config = config_lib.apply_scale(config_lib.base_config(), "cpu")
    config.injection.frames = (200_000,)
    config.variant = "inject@200k"
    return config
  return config_lib.apply_scale(config_lib.base_config(), arg)
