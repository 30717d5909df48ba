"""Plasticity interventions side by side, paper scale (200M frames, Double DQN); `:arg` picks one.

  --config=configs/compare.py:baseline           Double DQN, no intervention
  --config=configs/compare.py:inject             plasticity injection of the head at 50M frames
  --config=configs/compare.py:reset              reset of the head (online and target) at 50M frames
  --config=configs/compare.py:redo               ReDo: τ = 0.1, every 1,000 updates (16k frames) once learning starts
  --config=configs/compare.py:shrink_perturb     θ ← 0.8θ + 0.2θ_fresh at 50M frames
  --config=configs/compare.py:l2                 λ‖θ‖², λ = 1e-5, constant
  --config=configs/compare.py:l2_incremental     λ ramps from 0 over the first 50M frames
  --config=configs/compare.py:l2_periodic        λ on for 10M frames, off for 10M, repeating
  --config=configs/compare.py:l2_init            λ‖θ − θ₀‖², λ = 1e-5, constant
  --config=configs/compare.py:layer_norm         LayerNorm after every hidden layer
  --config=configs/compare.py:leaky_relu         LeakyReLU (slope 0.01)
  --config=configs/compare.py:crelu              CReLU, hidden layers at half width (same representation width)
  --config=configs/compare.py:drq                DrQ random shift (pad 4) of learner batches
Any of them combines with a scale (config.SCALES) via `,`, e.g. `redo,cpu`: the one-off
interventions and schedules sit at the same fractions of the shorter run (ReDo's period is
1,000 updates, at most a quarter of the run). Coefficients are unverified against the papers:
they are config fields (docs/interventions.md).
"""

from plasticity_rl import config as config_lib

VARIANTS = ("baseline", "inject", "reset", "redo", "shrink_perturb", "l2", "l2_incremental", "l2_periodic",
            "l2_init", "layer_norm", "leaky_relu", "crelu", "drq")
REDO_PERIOD_UPDATES = 1_000  # Sokar et al. 2023 (per reimplementations); dopamine's code default differs.


def get_config(arg: str | None = None):
  variant, _, scale = (arg or "baseline").partition(",")
  if variant not in VARIANTS:
    raise ValueError(f"unknown compare variant {variant!r}; allowed: {VARIANTS}")
  config = config_lib.apply_scale(config_lib.base_config(), scale or None)
  at = lambda fraction: max(1_000, int(config.total_frames * fraction) // 1_000 * 1_000)
  config.variant = variant
  if variant == "inject":
    config.injection.frames = (at(0.25),)
  elif variant == "reset":
    config.reset.frames = (at(0.25),)
    config.reset.target = "head"
  elif variant == "redo":
    period = int(REDO_PERIOD_UPDATES * 4 / config.learner.replay_ratio)
    config.redo.period_frames = min(period, config.total_frames // 4)
    config.redo.start_frames = config.replay.learning_starts_frames
    config.redo.tau = 0.1
  elif variant == "shrink_perturb":
    config.shrink_perturb.frames = (at(0.25),)
    config.shrink_perturb.alpha, config.shrink_perturb.sigma = 0.8, 0.2
  elif variant.startswith("l2"):
    config.regularizer.kind = "l2_init" if variant == "l2_init" else "l2"
    config.regularizer.coef = 1e-5
    if variant == "l2_incremental":
      config.regularizer.schedule, config.regularizer.ramp_frames = "incremental", at(0.25)
    elif variant == "l2_periodic":
      config.regularizer.schedule = "periodic"
      config.regularizer.on_frames = config.regularizer.off_frames = at(0.05)
  elif variant == "layer_norm":
    config.network.layer_norm = True
  elif variant in ("leaky_relu", "crelu"):
    config.network.activation = variant
    config.network.crelu_halve_width = True
  elif variant == "drq":
    config.learner.augment = "random_shift"
  return config
