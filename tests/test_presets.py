"""Every preset field against the reference file it claims to follow (the reference's own lines, verbatim).

A preset is a claim: these tests hold the lines of the reference config as the reference repository has them,
parse them, convert the units (the references count agent steps; our durations count frames = 4 × steps) and
compare them with the preset's fields. A preset value that departs from its reference fails here, unless the
preset's docstring lists the departure and the test names it.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from plasticity_rl import config as config_lib
from plasticity_rl import testing
from plasticity_rl.agents import dqn

FRAMES_PER_STEP = 4

# google/dopamine, dopamine/labs/atari_100k/configs/DrQ_eps.gin (commit 8de9df09), the binding lines verbatim.
DRQ_EPS_GIN = """
JaxDQNAgent.gamma = 0.99
JaxDQNAgent.update_horizon = 10  # DrQ (instead of 3)
JaxDQNAgent.min_replay_history = 1600  # DrQ (instead of 20000)
JaxDQNAgent.update_period = 1  # DrQ (rather than 4)
JaxDQNAgent.target_update_period = 1  # DrQ (rather than 8000)
JaxDQNAgent.epsilon_train = 0.01  # DrQ(ε)
JaxDQNAgent.epsilon_eval = 0.001  # DrQ(ε)
JaxDQNAgent.epsilon_decay_period = 5000  # DrQ
JaxDQNAgent.optimizer = 'adam'
JaxFullRainbowAgent.noisy = False  # DrQ (Efficient DQN)
JaxFullRainbowAgent.dueling = True
JaxFullRainbowAgent.double_dqn = True
JaxFullRainbowAgent.distributional = False  # DrQ (Efficient DQN)
JaxFullRainbowAgent.num_atoms = 1  # Since DrQ uses DQN, rather than C51
JaxFullRainbowAgent.num_updates_per_train_step = 1
JaxFullRainbowAgent.replay_scheme = 'uniform'
Atari100kRainbowAgent.data_augmentation = True
create_optimizer.learning_rate = 0.0001
create_optimizer.eps = 0.00015
atari_lib.create_atari_environment.sticky_actions = False
AtariPreprocessing.terminal_on_life_loss = True
Runner.num_iterations = 1
Runner.training_steps = 100000  # agent steps
MaxEpisodeEvalRunner.num_eval_episodes = 100  # agent episodes
Runner.max_steps_per_episode = 27000  # agent steps
OutOfGraphPrioritizedReplayBuffer.replay_capacity = 1000000 # 1M as a proxy for unbounded memory
OutOfGraphPrioritizedReplayBuffer.batch_size = 32
"""


def parse_gin(text: str) -> dict[str, object]:
  out = {}
  for line in text.strip().splitlines():
    key, _, value = line.split("#")[0].partition("=")
    value = value.strip()
    out[key.strip()] = (value.strip("'") if value.startswith("'") else
                        {"True": True, "False": False}.get(value, None) if value in ("True", "False") else
                        float(value) if re.search(r"[.e]", value) else int(value))
  return out


def test_drq_eps_preset_equals_dopamines_gin_file():
  gin = parse_gin(DRQ_EPS_GIN)
  c = testing.configs_module("drq_eps").get_config()
  config_lib.validate(c)
  steps = lambda frames: frames // FRAMES_PER_STEP
  # field: (our value, the gin's, converted to our unit).
  checks = {
      "learner.gamma": (c.learner.gamma, gin["JaxDQNAgent.gamma"]),
      "replay.n_step": (c.replay.n_step, gin["JaxDQNAgent.update_horizon"]),
      "replay.learning_starts_frames": (steps(c.replay.learning_starts_frames), gin["JaxDQNAgent.min_replay_history"]),
      "learner.replay_ratio": (c.learner.replay_ratio, gin["JaxFullRainbowAgent.num_updates_per_train_step"]
                               / gin["JaxDQNAgent.update_period"]),
      # Dopamine syncs every target_update_period *agent steps*; at one update per step that is per update.
      "learner.target_update_period_updates": (c.learner.target_update_period_updates,
                                               gin["JaxDQNAgent.target_update_period"]),
      "exploration.epsilon_end": (c.exploration.epsilon_end, gin["JaxDQNAgent.epsilon_train"]),
      "eval.epsilon": (c.eval.epsilon, gin["JaxDQNAgent.epsilon_eval"]),
      "exploration.decay_frames": (steps(c.exploration.decay_frames), gin["JaxDQNAgent.epsilon_decay_period"]),
      "learner.optimizer": (c.learner.optimizer, {"adam": "adam_dopamine"}[gin["JaxDQNAgent.optimizer"]]),
      "network.dueling": (c.network.dueling, gin["JaxFullRainbowAgent.dueling"]),
      "learner.double_q": (c.learner.double_q, gin["JaxFullRainbowAgent.double_dqn"]),
      "learner.augment": (c.learner.augment != "none", gin["Atari100kRainbowAgent.data_augmentation"]),
      "learner.learning_rate": (c.learner.learning_rate, gin["create_optimizer.learning_rate"]),
      "env.protocol sticky": (c.env.protocol == "atari100k" and not gin[
          "atari_lib.create_atari_environment.sticky_actions"], True),
      "total_frames": (steps(c.total_frames), gin["Runner.training_steps"] * gin["Runner.num_iterations"]),
      "eval.final_num_episodes": (c.eval.final_num_episodes, gin["MaxEpisodeEvalRunner.num_eval_episodes"]),
      "env.max_episode_frames": (steps(c.env.max_episode_frames), gin["Runner.max_steps_per_episode"]),
      "eval.max_episode_frames": (steps(c.eval.max_episode_frames), gin["Runner.max_steps_per_episode"]),
      "learner.batch_size": (c.learner.batch_size, gin["OutOfGraphPrioritizedReplayBuffer.batch_size"]),
  }
  wrong = {k: v for k, v in checks.items() if v[0] != v[1]}
  assert not wrong, wrong
  # What the gin leaves to the classes it configures (their defaults, read in the files the preset cites):
  assert (c.learner.loss, c.learner.huber_delta) == ("huber", None)  # full_rainbow_agent.train: huber_loss δ=1.
  assert c.learner.augment == "drq_dopamine"  # atari_100k_rainbow_agent.drq_image_augmentation.
  assert (c.network.initializer, c.network.conv_padding, c.network.hidden, c.network.width,
          c.network.shared_output_bias) == ("xavier_uniform", "SAME", 512, 1.0, False)  # FullRainbowNetwork.
  assert (c.env.num_envs, c.eval.protocol, c.learner.reward_clip) == (1, "atari100k", 1.0)
  assert (gin["JaxFullRainbowAgent.noisy"], gin["JaxFullRainbowAgent.distributional"],
          gin["JaxFullRainbowAgent.num_atoms"], gin["JaxFullRainbowAgent.replay_scheme"]) == (
              False, False, 1, "uniform")  # Plain ε-greedy DQN heads, uniform replay: what we have.
  agent = dqn.make_agent(c, num_actions=4)
  assert agent.optimizer is not None and agent.huber_delta == 1.0 and agent.double_q
  # Departure listed in the preset's docstring: 100k transitions instead of the gin's 1M, never filled by 100k steps.
  assert gin["OutOfGraphPrioritizedReplayBuffer.replay_capacity"] == 1_000_000
  assert c.replay.capacity >= steps(c.total_frames)


def test_drq_eps_adam_eps_is_the_gins():
  gin = parse_gin(DRQ_EPS_GIN)
  c = testing.configs_module("drq_eps").get_config()
  optimizer = dqn.make_optimizer(c.learner)
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  params = {"w": jnp.zeros(3)}
  grads = {"w": jnp.array([1e-3, 0.0, -1e-3])}
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  # Adam's first step is −lr · g / (|g| + ε): recovers ε = create_optimizer.eps.
  lr, eps = gin["create_optimizer.learning_rate"], gin["create_optimizer.eps"]
  np.testing.assert_allclose(np.asarray(updates["w"]), -lr * np.array([1e-3, 0, -1e-3]) / (1e-3 + eps), rtol=1e-5)


def test_drq_eps_smoke_run_ends_with_its_final_evaluation(tmp_path, fake_run_env):
  """The schedule's arithmetic (evaluations, updates) on the fake envpool; tests/test_golden.py runs it on Atari."""
  workdir = tmp_path / "run"
  result = subprocess.run([sys.executable, "-m", "plasticity_rl.main", "--config=configs/drq_eps.py:smoke",
                           f"--workdir={workdir}"], cwd=os.path.dirname(os.path.dirname(__file__)), env=fake_run_env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  rows = [line.split(",") for line in (workdir / "eval.csv").read_text().splitlines()[1:]]
  by_frames = {}
  for row in rows:
    by_frames.setdefault(int(row[3]), []).append(row)
  assert sorted(by_frames) == [1_000, 2_000]
  assert len(by_frames[1_000]) == 1 and len(by_frames[2_000]) == 3  # eval.num_episodes, then final_num_episodes.
  summary = json.loads((workdir / "summary.json").read_text())
  # One update per agent step from the step whose add fills the warm-up (frames 1,000) to the last (2,000).
  assert summary["frames"] == 2_000 and summary["updates"] == (2_000 - 1_000) // 4 + 1


# google/dopamine, dopamine/jax/agents/dqn/configs/dqn.gin (commit 9f616b92), the binding lines verbatim.
DOPAMINE_DQN_GIN = """
JaxDQNAgent.gamma = 0.99
JaxDQNAgent.update_horizon = 1
JaxDQNAgent.min_replay_history = 20_000  # agent steps
JaxDQNAgent.update_period = 4
JaxDQNAgent.target_update_period = 8_000  # agent steps
JaxDQNAgent.epsilon_train = 0.01
JaxDQNAgent.epsilon_eval = 0.001
JaxDQNAgent.epsilon_decay_period = 250_000  # agent steps
JaxDQNAgent.optimizer = 'adam'
create_optimizer.learning_rate = 6.25e-5
create_optimizer.eps = 1.5e-4
atari_lib.create_atari_environment.sticky_actions = True
Runner.num_iterations = 200
Runner.training_steps = 250_000  # agent steps
Runner.evaluation_steps = 125_000  # agent steps
Runner.max_steps_per_episode = 27_000  # agent steps
ReplayBuffer.max_capacity = 1_000_000
ReplayBuffer.batch_size = 32
"""


def test_dopamine_dqn_preset_equals_dopamines_gin_file():
  gin = parse_gin(DOPAMINE_DQN_GIN)  # int("20_000") is 20000.
  c = testing.configs_module("dopamine_dqn").get_config()
  config_lib.validate(c)
  steps = lambda frames: frames // FRAMES_PER_STEP
  checks = {
      "learner.gamma": (c.learner.gamma, gin["JaxDQNAgent.gamma"]),
      "replay.n_step": (c.replay.n_step, gin["JaxDQNAgent.update_horizon"]),
      "replay.learning_starts_frames": (steps(c.replay.learning_starts_frames), gin["JaxDQNAgent.min_replay_history"]),
      "learner.replay_ratio": (c.learner.replay_ratio, 1 / gin["JaxDQNAgent.update_period"]),
      # Counted in agent steps there, in updates here: steps × replay ratio.
      "learner.target_update_period_updates": (c.learner.target_update_period_updates,
                                               gin["JaxDQNAgent.target_update_period"] / gin["JaxDQNAgent.update_period"]),
      "exploration.epsilon_end": (c.exploration.epsilon_end, gin["JaxDQNAgent.epsilon_train"]),
      "eval.epsilon": (c.eval.epsilon, gin["JaxDQNAgent.epsilon_eval"]),
      "exploration.decay_frames": (steps(c.exploration.decay_frames), gin["JaxDQNAgent.epsilon_decay_period"]),
      "learner.optimizer": (c.learner.optimizer, {"adam": "adam_dopamine"}[gin["JaxDQNAgent.optimizer"]]),
      "learner.learning_rate": (c.learner.learning_rate, gin["create_optimizer.learning_rate"]),
      "total_frames": (steps(c.total_frames), gin["Runner.training_steps"] * gin["Runner.num_iterations"]),
      "eval.period_frames": (steps(c.eval.period_frames), gin["Runner.training_steps"]),
      "env.max_episode_frames": (steps(c.env.max_episode_frames), gin["Runner.max_steps_per_episode"]),
      "eval.max_episode_frames": (steps(c.eval.max_episode_frames), gin["Runner.max_steps_per_episode"]),
      "replay.capacity": (c.replay.capacity, gin["ReplayBuffer.max_capacity"]),
      "learner.batch_size": (c.learner.batch_size, gin["ReplayBuffer.batch_size"]),
  }
  wrong = {k: v for k, v in checks.items() if v[0] != v[1]}
  assert not wrong, wrong
  from plasticity_rl.envs import atari  # pylint: disable=g-import-not-at-top
  protocol = atari.PROTOCOLS[c.env.protocol]
  assert gin["atari_lib.create_atari_environment.sticky_actions"] and protocol.sticky_action_prob == 0.25
  assert not protocol.full_action_space and not protocol.life_loss_discount and protocol.noop_max == 1
  # JaxDQNAgent's defaults the gin leaves alone (dqn_agent.py): loss_type='mse', the target net's max.
  assert (c.learner.loss, c.learner.double_q) == ("mse", False)
  assert (c.network.initializer, c.network.conv_padding, c.network.dueling, c.network.shared_output_bias) == (
      "xavier_uniform", "SAME", False, False)  # jax/networks.py NatureDQNNetwork.


# google-deepmind/dqn_zoo, dqn_zoo/double_q/run_atari.py (commit 0867137b), the flags verbatim ("Relevant flag
# values are expressed in terms of environment frames").
DQN_ZOO_DOUBLE_Q_FLAGS = """
flags.DEFINE_integer('replay_capacity', int(1e6), '')
flags.DEFINE_float('min_replay_capacity_fraction', 0.05, '')
flags.DEFINE_integer('batch_size', 32, '')
flags.DEFINE_integer('max_frames_per_episode', 108000, '')  # 30 mins.
flags.DEFINE_integer('num_action_repeats', 4, '')
flags.DEFINE_float('exploration_epsilon_begin_value', 1., '')
flags.DEFINE_float('exploration_epsilon_end_value', 0.01, '')
flags.DEFINE_float('exploration_epsilon_decay_frame_fraction', 0.02, '')
flags.DEFINE_float('eval_exploration_epsilon', 0.01, '')
flags.DEFINE_integer('target_network_update_period', int(1.2e5), '')
flags.DEFINE_float('grad_error_bound', 1. / 32, '')
flags.DEFINE_float('learning_rate', 0.00025, '')
flags.DEFINE_float('optimizer_epsilon', 0.01 / 32**2, '')
flags.DEFINE_float('additional_discount', 0.99, '')
flags.DEFINE_float('max_abs_reward', 1., '')
flags.DEFINE_integer('num_iterations', 200, '')
flags.DEFINE_integer('num_train_frames', int(1e6), '')  # Per iteration.
flags.DEFINE_integer('learn_period', 16, '')
"""


def parse_absl_flags(text: str) -> dict[str, float]:
  out = {}
  for line in text.strip().splitlines():
    name, value = re.match(r"flags\.DEFINE_\w+\('(\w+)', (.+), ''\)", line.split("  #")[0]).groups()
    out[name] = eval(value, {"int": int})  # pylint: disable=eval-used  (literal arithmetic from the source)
  return out


def test_paper_scale_config_equals_dqn_zoo_double_q():
  f = parse_absl_flags(DQN_ZOO_DOUBLE_Q_FLAGS)
  c = config_lib.base_config()
  config_lib.validate(c)
  checks = {
      "replay.capacity": (c.replay.capacity, f["replay_capacity"]),
      "replay.learning_starts_frames": (c.replay.learning_starts_frames,
                                        f["min_replay_capacity_fraction"] * f["replay_capacity"] * f["num_action_repeats"]),
      "learner.batch_size": (c.learner.batch_size, f["batch_size"]),
      "env.max_episode_frames": (c.env.max_episode_frames, f["max_frames_per_episode"]),
      "eval.max_episode_frames": (c.eval.max_episode_frames, f["max_frames_per_episode"]),
      "exploration.epsilon_start": (c.exploration.epsilon_start, f["exploration_epsilon_begin_value"]),
      "exploration.epsilon_end": (c.exploration.epsilon_end, f["exploration_epsilon_end_value"]),
      "exploration.decay_frames": (c.exploration.decay_frames, f["exploration_epsilon_decay_frame_fraction"]
                                   * f["num_iterations"] * f["num_train_frames"]),
      "eval.epsilon": (c.eval.epsilon, f["eval_exploration_epsilon"]),
      # learn_period and the target period count frames: updates = frames / learn_period.
      "learner.replay_ratio": (c.learner.replay_ratio, f["num_action_repeats"] / f["learn_period"]),
      "learner.target_update_period_updates": (c.learner.target_update_period_updates,
                                               f["target_network_update_period"] / f["learn_period"]),
      "learner.grad_error_bound": (dqn.make_agent(c, 4).grad_error_bound, f["grad_error_bound"]),
      "learner.gamma": (c.learner.gamma, f["additional_discount"]),
      "learner.reward_clip": (c.learner.reward_clip, f["max_abs_reward"]),
      "total_frames": (c.total_frames, f["num_iterations"] * f["num_train_frames"]),
  }
  wrong = {k: v for k, v in checks.items() if v[0] != v[1]}
  assert not wrong, wrong
  assert (c.learner.loss, c.learner.double_q, c.learner.optimizer) == ("dqn_zoo", True, "rmsprop_dqn_zoo")
  # dqn_zoo/networks.py double_dqn_atari_network: _dqn_default_initializer, linear_with_shared_bias, VALID.
  assert (c.network.initializer, c.network.shared_output_bias, c.network.conv_padding, c.network.dueling) == (
      "dqn_zoo", True, "VALID", False)
  assert (c.env.protocol, c.eval.protocol) == ("dqn_zoo", "dqn_zoo")  # 1–30 no-ops, life loss discount 0.
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  params = {"w": jnp.zeros(2)}
  opt = dqn.make_optimizer(c.learner)
  # optax.rmsprop(lr, decay=0.95, eps=optimizer_epsilon, centered=True): first step −lr·g/√(ν − μ² + ε).
  g = jnp.array([1e-2, -3e-2])
  updates, _ = opt.update({"w": g}, opt.init(params), params)
  nu, mu = 0.05 * g**2, 0.05 * g
  np.testing.assert_allclose(updates["w"], -f["learning_rate"] * g / np.sqrt(nu - mu**2 + f["optimizer_epsilon"]),
                             rtol=1e-4)
