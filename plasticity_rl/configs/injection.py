"""Plasticity injection experiments (Nikishin et al., NeurIPS 2023), paper scale.

  --config=configs/injection.py            inject once at 50M of 200M frames (the paper's main setting)
  --config=configs/injection.py:double     two injections, 50M and 100M (the CS285 report's double injection)
  --config=configs/injection.py:growth     dynamic growth: a 128-unit head grown to 256 (50M) and 512 (100M)
  --config=configs/injection.py:encoder    ablation: inject and also freeze the encoder
  --config=configs/injection.py:reset_opt  ablation: reset the optimizer statistics of the injected slot
Any of them combines with a scale (config.SCALES) via `,`: e.g. `growth,cpu` shrinks the
run to the CPU demo's budget and places the injections at the same fractions of it.
"""

from plasticity_rl import config as config_lib

VARIANTS = ("inject", "double", "growth", "encoder", "reset_opt")


def get_config(arg: str | None = None):
  variant, _, scale = (arg or "inject").partition(",")
  if variant not in VARIANTS:
    raise ValueError(f"unknown injection variant {variant!r}; allowed: {VARIANTS}")
  config = config_lib.apply_scale(config_lib.base_config(), scale or None)
  at = lambda fraction: int(config.total_frames * fraction) // 1_000 * 1_000
  config.variant = variant
  config.injection.frames = (at(0.25),)
  if variant == "double":
    config.injection.frames = (at(0.25), at(0.5))
  elif variant == "growth":
    config.network.hidden = 128
    config.injection.frames = (at(0.25), at(0.5))
    config.injection.hidden = (256, 512)
  elif variant == "encoder":
    config.injection.freeze_encoder = True
  elif variant == "reset_opt":
    config.injection.reset_optimizer = True
  return config
