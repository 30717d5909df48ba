"""Double DQN on Atari, DQN Zoo "double_q" settings; `:arg` picks a scale.

  --config=configs/dqn.py         paper scale: 200M frames, 1M replay (GPU).
  --config=configs/dqn.py:cpu     the README's demo: a real ~10-minute run on 2 CPU cores, with
                                  one plasticity injection half-way.
  --config=configs/dqn.py:smoke   seconds, for tests.
"""

from plasticity_rl import config as config_lib


def get_config(arg: str | None = None):
  config = config_lib.apply_scale(config_lib.base_config(), arg)
  if arg == "cpu":
    config.injection.frames = (200_000,)  # Marked on the demo's learning curve.
  return config
