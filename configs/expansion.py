"""Neuroplastic-Expansion-style growth (plasticity_rl/expansion.py) on Double DQN; `:arg` picks a scale.

  --config=configs/expansion.py          paper scale (200M frames): 25% of every hidden layer's units at the
                                         start; every total_frames / 40 (5M frames) from learning start, 5%
                                         of each layer's units grown and τ = 0.1-dormant ones pruned; a review
                                         of the oldest 10% of the replay when the dormant count flattens.
  --config=configs/expansion.py:cpu      the same fractions of the README's ~5-minute CPU run.
  --config=configs/expansion.py:smoke    seconds, for tests.

The numbers are this adaptation's defaults, not the paper's (docs/interventions.md): config fields.
"""

from plasticity_rl import config as config_lib

EVENTS = 40  # Grow-and-prune steps over the run: full width after 15 (5% each) if nothing is pruned.
REVIEW_SHARE = 0.1  # A review replaces this share of the learner batches between two steps.


def get_config(arg: str | None = None):
  config = config_lib.apply_scale(config_lib.base_config(), arg or None)
  config.variant = "expansion"
  c = config.expansion
  c.enabled = True
  c.initial_fraction = 0.25
  c.grow_fraction = 0.05
  c.period_frames = max(1_000, config.total_frames // EVENTS // 1_000 * 1_000)
  c.start_frames = config.replay.learning_starts_frames
  c.prune_tau = 0.1
  updates_per_period = c.period_frames / 4 * config.learner.replay_ratio
  c.review_batches = max(1, int(REVIEW_SHARE * updates_per_period))
  c.review_fraction = 0.1
  c.review_window = 5
  c.review_tolerance = 0.002
  return config
