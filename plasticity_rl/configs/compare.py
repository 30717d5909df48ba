"""One run of a plasticity intervention, by its sweep variant name; `:arg` = NAME[,SCALE].

  --config=configs/compare.py:baseline          Double DQN, no intervention
  --config=configs/compare.py:inject            injection of the head at a quarter of the run (50M of 200M)
  --config=configs/compare.py:reset             reset of the head (online and target) there
  --config=configs/compare.py:shrink_perturb    θ ← 0.8θ + 0.2θ_fresh there
  --config=configs/compare.py:redo              ReDo, τ = 0.1, every 1,000 updates
  --config=configs/compare.py:l2 | l2_init | l2_incremental | l2_periodic
  --config=configs/compare.py:layer_norm | leaky_relu | crelu | drq | adaptive_rr
and any other name of configs/variants.py (e.g. inject@25M+75M, grow@2k+3k).

The overrides are configs/variants.py's, so a single run and a sweep of the same
name are the same experiment. With a scale (config.SCALES), e.g. `redo,cpu`, the
one-off interventions move to a quarter of the shorter run, ReDo's period stays
1,000 updates (at most a quarter of the run), and L2 schedules shrink in proportion.
To run them all side by side through the launcher:

  plasticity-rl-sweep --config=configs/dqn.py --games=atari5 --seeds=0,1,2 \
      --variants=baseline,inject@50M,reset@50M,shrink_perturb@50M,redo,l2,l2_init,layer_norm,crelu,drq,adaptive_rr
"""

import importlib.util
import os

from plasticity_rl import config as config_lib

_spec = importlib.util.spec_from_file_location("plasticity_rl_configs_variants",
                                               os.path.join(os.path.dirname(__file__), "variants.py"))
variants = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(variants)

PAPER_FRAMES = 200_000_000
AT_A_QUARTER = ("inject", "reset", "shrink_perturb")  # Shorthands: name@(total_frames / 4).
REDO_PERIOD_UPDATES = 1_000  # Sokar et al. 2023 (per reimplementations); dopamine's code default differs.


def overrides_for(name: str, config) -> dict:
  """The variant's overrides, moved to the run's length when it is shorter than the paper's."""
  if name in AT_A_QUARTER:
    name = f"{name}@{max(1_000, config.total_frames // 4 // 1_000 * 1_000)}"
  overrides = variants.get_variant(name)
  scale = config.total_frames / PAPER_FRAMES
  if "redo.period_frames" in overrides:
    period = int(REDO_PERIOD_UPDATES * 4 / config.learner.replay_ratio)
    overrides["redo.period_frames"] = min(period, config.total_frames // 4)
  if overrides.get("learner.adaptive_replay_ratio.enabled"):  # Its high phase is the run's replay ratio.
    overrides["learner.replay_ratio"] = config.learner.adaptive_replay_ratio.high
  for field in ("regularizer.ramp_frames", "regularizer.on_frames", "regularizer.off_frames"):
    if field in overrides and scale < 1:
      overrides[field] = max(1_000, int(overrides[field] * scale))
  return overrides


def get_config(arg: str | None = None):
  name, _, scale = (arg or "baseline").partition(",")
  config = config_lib.apply_scale(config_lib.base_config(), scale or None)
  for field, value in overrides_for(name, config).items():
    *sections, key = field.split(".")
    target = config
    for section in sections:
      target = target[section]
    target[key] = value
  config.variant = name
  return config
