"""Double DQN on Atari, DQN Zoo "double_q" settings; `:arg` picks a scale.

  --config=configs/dqn.py         paper scale: 200M frames, 1M replay (GPU).
  --config=configs/dqn.py:cpu     the README's demo: a real short run on 2 CPU cores (≤ 10 min).
  --config=configs/dqn.py:smoke   seconds, for tests.
"""

from plasticity_rl import config as config_lib


def get_config(arg: str | None = None):
  config = config_lib.base_config()
  if arg in (None, "", "paper"):
    return config
  if arg == "cpu":
    # ~10 minutes on 2 CPU cores: a narrower network, a lower replay ratio, 3-step returns,
    # and one plasticity injection half-way (the event is marked on the learning curve).
    config.game = "Breakout"
    config.total_frames = 400_000
    config.env.num_envs = 8
    config.replay.capacity = 100_000
    config.replay.n_step = 3
    config.replay.learning_starts_frames = 20_000
    config.learner.optimizer = "adam_dopamine"
    config.learner.learning_rate = 2.5e-4
    config.learner.replay_ratio = 0.125
    config.learner.target_update_period_updates = 500
    config.exploration.decay_frames = 150_000
    config.exploration.epsilon_end = 0.05
    config.network.width = 0.5
    config.injection.frames = (200_000,)
    config.eval.period_frames = 100_000
    config.eval.num_episodes = 4
    config.eval.epsilon = 0.05
    config.eval.max_episode_frames = 27_000
    config.log.period_frames = 20_000
    return config
  if arg == "smoke":
    config.game = "Pong"
    config.total_frames = 4_000
    config.env.num_envs = 4
    config.env.max_episode_frames = 2_000
    config.replay.capacity = 4_000
    config.replay.learning_starts_frames = 1_000
    config.learner.batch_size = 8
    config.learner.target_update_period_updates = 20
    config.exploration.decay_frames = 2_000
    config.network.width = 0.25
    config.network.hidden = 64
    config.eval.period_frames = 2_000
    config.eval.num_episodes = 2
    config.eval.max_episode_frames = 400
    config.log.period_frames = 1_000
    return config
  raise ValueError(f"unknown config arg {arg!r}; allowed: paper (default), cpu, smoke")
