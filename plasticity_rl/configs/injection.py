"""Plasticity injection experiments (Nikishin et al., NeurIPS 2023), paper scale.

  --config=configs/injection.py            inject once at 50M of 200M frames (the paper's main setting)
  --config=configs/injection.py:double     two injections, 50M and 100M (the CS285 report's double injection)
  --config=configs/injection.py:growth     dynamic growth: a 128-unit head grown to 256 (50M) and 512 (100M)
  --config=configs/injection.py:encoder    ablation: inject and also freeze the encoder
  --config=configs/injection.py:reset_opt  ablation: reset the optimizer statistics of the injected slot
Any of them combines with a scale (config.SCALES) via `,`: e.g. `growth,cpu` shrinks the
run to the CPU demo's budget and places the injections at the same fractions of it.

The run's label (config.variant) is the sweep's name of the same overrides (configs/variants.label), so a
preset run and a sweep run of one experiment have one name: inject@50M, inject@50M+100M, grow,
inject@50M-freeze_encoder, inject@50M-reset_opt at paper scale; at `cpu` (400k frames) inject@100k,
inject@100k+200k, grow@100k+200k, inject@100k-freeze_encoder, inject@100k-reset_opt. Before 2026-12-01 the
labels were the preset names (inject, double, growth, encoder, reset_opt): a workdir made then holds that
label in its config.json and resumes with it given back, e.g. `--config=configs/injection.py:double
--config.variant=double` (without it, main refuses the changed label: "variant: 'double' -> …").
"""

from plasticity_rl import config as config_lib
from plasticity_rl.configs import variants

PRESETS = ("inject", "double", "growth", "encoder", "reset_opt")


def get_config(arg: str | None = None):
  preset, _, scale = (arg or "inject").partition(",")
  if preset not in PRESETS:
    raise ValueError(f"unknown injection variant {preset!r}; allowed: {PRESETS}")
  config = config_lib.apply_scale(config_lib.base_config(), scale or None)
  at = lambda fraction: int(config.total_frames * fraction) // 1_000 * 1_000
  overrides = {"injection.frames": (at(0.25),)}
  if preset == "double":
    overrides["injection.frames"] = (at(0.25), at(0.5))
  elif preset == "growth":
    overrides.update({"network.hidden": 128, "injection.frames": (at(0.25), at(0.5)), "injection.hidden": (256, 512)})
  elif preset == "encoder":
    overrides["injection.freeze_encoder"] = True
  elif preset == "reset_opt":
    overrides["injection.reset_optimizer"] = True
  for field, value in overrides.items():
    section, key = field.split(".")
    config[section][key] = value
  config.variant = variants.label(overrides)
  return config
