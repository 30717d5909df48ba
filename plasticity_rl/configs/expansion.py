"""Neuroplastic-Expansion-style growth (plasticity_rl/expansion.py) on Double DQN; `:arg` picks a scale.

  --config=configs/expansion.py          paper scale (200M frames): 25% of every hidden layer's units at the
                                         start; every total_frames / 40 (5M frames) from learning start, a
                                         cosine-annealed share of each layer's initial pool grown (ζ = 0.1 at
                                         the first step, STL_Scheduler's cosine_annealing), fully dormant
                                         (τ = 0) units pruned, at most 0.4 × the units grown; a review of the
                                         oldest 30% of the replay (each batch w.p. 0.5) when the dormant
                                         fraction flattens.
  --config=configs/expansion.py:cpu      the same fractions of the README's ~5-minute CPU run.
  --config=configs/expansion.py:smoke    seconds, for tests.

Sources and the values we keep (initial fraction, ζ, the number of steps, the review trigger): the docstring of
expansion.expansion_config (torressliu/neuroplastic-expansion, NE/STL_Scheduler.py, NE/utils.py, stl/TD3.py).
"""

from plasticity_rl import config as config_lib

EVENTS = 40  # Grow-and-prune steps over the run; at ζ = 0.1 the cosine-annealed growth sums to ≈ 2 pools.
REVIEW_SHARE = 0.1  # A review lasts this share of the learner batches between two steps.


def get_config(arg: str | None = None):
  config = config_lib.apply_scale(config_lib.base_config(), arg or None)
  config.variant = "expansion"
  c = config.expansion
  c.enabled = True
  c.initial_fraction = 0.25
  c.grow_fraction = 0.1
  c.grow_schedule = "cosine"
  c.period_frames = max(1_000, config.total_frames // EVENTS // 1_000 * 1_000)
  c.start_frames = config.replay.learning_starts_frames
  c.prune_tau = 0.0
  c.prune_cap = 0.4
  updates_per_period = c.period_frames / 4 * config.learner.replay_ratio
  c.review_batches = max(1, int(REVIEW_SHARE * updates_per_period))
  c.review_fraction = 0.3
  c.review_probability = 0.5
  c.review_window = 5
  c.review_tolerance = 0.002
  return config
