"""Dopamine's JAX DQN on Atari (the base agent of ReDo, Sokar et al. 2023): not Double DQN, Adam, MSE loss.

Source of every value: google/dopamine, dopamine/jax/agents/dqn/configs/dqn.gin and the classes it configures
(jax/agents/dqn/dqn_agent.py: JaxDQNAgent's defaults, e.g. loss_type='mse'; jax/networks.py NatureDQNNetwork;
discrete_domains/atari_lib.py). tests/test_presets.py checks the config against the gin file's own lines.

  --config=configs/dopamine_dqn.py         200 iterations × 250k agent steps = 200M frames (GPU).
  --config=configs/dopamine_dqn.py:smoke   seconds, for tests.

Departures we keep:
- Evaluation: Dopamine evaluates for 125k agent steps after each 250k-step iteration and reports the mean
  return of the episodes that end; here every 1M frames (one iteration) eval.num_episodes = 27 whole
  episodes on separate envs (≈ 125k steps of a median game; counted in episodes, so each one ends).
- 8 parallel envs instead of one; the replay ratio (1 update per 4 agent steps) and every period counted in
  agent steps are kept, so the data per update are the same in expectation.
"""

from plasticity_rl import config as config_lib

GIN = "dopamine/jax/agents/dqn/configs/dqn.gin"


def get_config(arg: str | None = None):
  c = config_lib.base_config()
  c.variant = "dopamine_dqn"
  c.total_frames = 200 * 250_000 * 4  # Runner.num_iterations × Runner.training_steps (agent steps) × 4.
  c.env.protocol = c.eval.protocol = "dopamine"  # sticky_actions = True.
  c.env.max_episode_frames = c.eval.max_episode_frames = 27_000 * 4  # Runner.max_steps_per_episode.
  c.eval.epsilon = 0.001  # JaxDQNAgent.epsilon_eval.
  c.eval.period_frames = 250_000 * 4  # One iteration.
  c.eval.num_episodes = 27
  c.replay.capacity = 1_000_000  # ReplayBuffer.max_capacity.
  c.replay.n_step = 1  # JaxDQNAgent.update_horizon.
  c.replay.learning_starts_frames = 20_000 * 4  # JaxDQNAgent.min_replay_history (agent steps).
  c.learner.batch_size = 32  # ReplayBuffer.batch_size.
  c.learner.gamma = 0.99
  c.learner.replay_ratio = 1 / 4  # JaxDQNAgent.update_period = 4.
  c.learner.target_update_period_updates = 8_000 // 4  # target_update_period = 8000 agent steps.
  c.learner.optimizer = "adam_dopamine"  # JaxDQNAgent.optimizer = 'adam', create_optimizer.eps = 1.5e-4.
  c.learner.learning_rate = 6.25e-5  # create_optimizer.learning_rate.
  c.learner.double_q = False  # JaxDQNAgent: target_q takes the target net's max.
  c.learner.loss = "mse"  # JaxDQNAgent(loss_type='mse').
  c.exploration.epsilon_start = 1.0
  c.exploration.epsilon_end = 0.01  # JaxDQNAgent.epsilon_train.
  c.exploration.decay_frames = 250_000 * 4  # JaxDQNAgent.epsilon_decay_period (agent steps).
  c.network.initializer = "xavier_uniform"  # NatureDQNNetwork: xavier_uniform kernels, zero biases.
  c.network.conv_padding = "SAME"  # NatureDQNNetwork: nn.Conv's default padding.
  c.network.shared_output_bias = False
  c.network.dueling = False
  if arg == "smoke":
    return config_lib.apply_scale(c, "smoke")  # Sizes shrunk; the learning rule and protocol as above.
  if arg:
    raise ValueError(f"unknown argument {arg!r}; allowed: smoke")
  return c
