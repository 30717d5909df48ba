"""Double DQN on Atari as DQN Zoo's "double_q" agent; `:arg` picks a scale (config.SCALES).

Paper scale follows google-deepmind/dqn_zoo, dqn_zoo/double_q/run_atari.py (its flags), agent.py (the loss:
rlax.clip_gradient of the TD error to ±1/32, then ½td², then the batch mean) and networks.py
(double_dqn_atari_network: ±1/√fan_in uniform init of weights and biases, one shared output bias);
tests/test_presets.py checks every value against those files' lines, docs/protocols.md tabulates them.
Departures we keep: 8 envs stepped in parallel (DQN Zoo steps one; the replay ratio, 1 update per 4 agent
steps, and every period are kept); evaluation of 8 whole episodes every 1M frames (DQN Zoo: 500k frames of
evaluation per 1M-frame iteration); a replay of single frames rebuilt into stacks (the same transitions).

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
