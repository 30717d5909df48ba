"""Named variants for sweeps: each name is a set of config overrides.

A variant is applied on top of the sweep's base config (`--config=…`) and its
`--override`s; the launcher also sets `config.variant` to the name, which is the
label every result row carries. Overrides are {"dotted.field": value}.

  baseline          no overrides.
  inject@50M        plasticity injection of the head at 50M frames.
  inject@25M+75M    two injections, at 25M and 75M frames.
  grow              network.hidden=128, then injections at 50M and 100M frames
                    that grow the head's hidden layer to 256 and then 512 units
                    (configs/injection.py:growth).
  inject@50M-freeze_encoder, inject@50M-reset_opt
                    the ablations of configs/injection.py: injection at 50M that
                    also freezes the encoder / resets the optimizer statistics.
The interventions injection is compared with (docs/interventions.md):
  reset@50M         re-initialize the head (online and target) at 50M frames.
  shrink_perturb@50M  θ ← 0.8θ + 0.2θ_fresh at 50M frames.
  redo              ReDo, τ = 0.1, every 16k frames (1,000 updates at replay ratio 0.25).
  l2, l2_init       λ‖θ‖² / λ‖θ − θ₀‖², λ = 1e-5, constant.
  l2_incremental, l2_periodic   L2 with λ ramped over 50M frames / on 10M, off 10M.
  layer_norm, leaky_relu, crelu   architecture options (CReLU at half width).
  drq               DrQ random shift (pad 4) of learner batches.
  adaptive_rr       replay ratio 0.0625 until the critic's FAU settles, then 0.25.
  expansion         Neuroplastic-Expansion-style growth and pruning (configs/expansion.py).

Patterns (any frame counts, so that short CPU sweeps can use them too):
  inject@<F>[+<F>…]  injections at those frames, e.g. inject@2k, inject@1.5M+3M.
  reset@<F>[+<F>…], shrink_perturb@<F>[+<F>…]   the same for resets / shrink-and-perturb.
  grow@<F>[+<F>…]    network.hidden=128, injections growing the head to
                     256, 512, … units (doubling), e.g. grow@2k+3k.
Frame counts: an integer with an optional k (×1e3), M (×1e6) or G (×1e9),
e.g. 2000, 2k, 50M, 1.5M; underscores are allowed (50_000_000).

To add a variant, add an entry to VARIANTS (a fixed name) or a function
decorated with @pattern(regex, usage) (a family of names). E.g. when
`reset` exists in the config:
  VARIANTS["reset@50M"] = {"reset.frames": (50_000_000,)}
"""

import re
from typing import Any, Callable

Overrides = dict[str, Any]

VARIANTS: dict[str, Overrides] = {
    "baseline": {},
    "inject@50M": {"injection.frames": (50_000_000,)},
    "inject@25M+75M": {"injection.frames": (25_000_000, 75_000_000)},
    "grow": {"network.hidden": 128, "injection.frames": (50_000_000, 100_000_000), "injection.hidden": (256, 512)},
    # The ablations of configs/injection.py.
    "inject@50M-freeze_encoder": {"injection.frames": (50_000_000,), "injection.freeze_encoder": True},
    "inject@50M-reset_opt": {"injection.frames": (50_000_000,), "injection.reset_optimizer": True},
    # The interventions injection is compared with.
    "reset@50M": {"reset.frames": (50_000_000,), "reset.target": "head"},
    "shrink_perturb@50M": {"shrink_perturb.frames": (50_000_000,), "shrink_perturb.alpha": 0.8,
                           "shrink_perturb.sigma": 0.2},
    "redo": {"redo.period_frames": 16_000, "redo.tau": 0.1},
    "l2": {"regularizer.kind": "l2", "regularizer.coef": 1e-5},
    "l2_init": {"regularizer.kind": "l2_init", "regularizer.coef": 1e-5},
    "l2_incremental": {"regularizer.kind": "l2", "regularizer.coef": 1e-5, "regularizer.schedule": "incremental",
                       "regularizer.ramp_frames": 50_000_000},
    "l2_periodic": {"regularizer.kind": "l2", "regularizer.coef": 1e-5, "regularizer.schedule": "periodic",
                    "regularizer.on_frames": 10_000_000, "regularizer.off_frames": 10_000_000},
    "layer_norm": {"network.layer_norm": True},
    "leaky_relu": {"network.activation": "leaky_relu"},
    "crelu": {"network.activation": "crelu", "network.crelu_halve_width": True},
    "drq": {"learner.augment": "random_shift"},
    "adaptive_rr": {"learner.adaptive_replay_ratio.enabled": True},
    # configs/expansion.py at paper scale (its values follow the Neuroplastic Expansion code, expansion.py).
    "expansion": {"expansion.enabled": True, "expansion.initial_fraction": 0.25, "expansion.grow_fraction": 0.1,
                  "expansion.grow_schedule": "cosine", "expansion.period_frames": 5_000_000,
                  "expansion.start_frames": 200_000, "expansion.prune_tau": 0.0, "expansion.prune_cap": 0.4,
                  "expansion.review_batches": 31_250, "expansion.review_fraction": 0.3,
                  "expansion.review_probability": 0.5, "expansion.review_window": 5,
                  "expansion.review_tolerance": 0.002},
}

# (compiled regex, usage, builder(match) -> overrides), tried in order after VARIANTS.
PATTERNS: list[tuple[re.Pattern, str, Callable[[re.Match], Overrides]]] = []

_UNITS = {"": 1, "k": 1_000, "K": 1_000, "M": 1_000_000, "G": 1_000_000_000}
_FRAMES = r"[0-9][0-9_.]*[kKMG]?"


def parse_frames(text: str) -> int:
  """'2k' -> 2000, '50M' -> 50_000_000, '1.5M' -> 1_500_000, '2000' -> 2000."""
  m = re.fullmatch(r"([0-9][0-9_]*(?:\.[0-9_]+)?)([kKMG]?)", text.strip())
  if m is None:
    raise ValueError(f"bad frame count {text!r}: use an integer with an optional k, M or G suffix (2k, 50M, 1.5M)")
  value = float(m.group(1).replace("_", "")) * _UNITS[m.group(2)]
  if value != int(value):
    raise ValueError(f"bad frame count {text!r}: not a whole number of frames")
  return int(value)


def _frames_list(text: str) -> tuple[int, ...]:
  return tuple(parse_frames(part) for part in text.split("+"))


def pattern(regex: str, usage: str):
  """Registers a family of variant names; the builder gets the re.Match."""
  def decorator(builder: Callable[[re.Match], Overrides]):
    PATTERNS.append((re.compile(regex), usage, builder))
    return builder
  return decorator


@pattern(rf"inject@((?:{_FRAMES})(?:\+{_FRAMES})*)", "inject@<F>[+<F>…]")
def _inject(m: re.Match) -> Overrides:
  return {"injection.frames": _frames_list(m.group(1))}


@pattern(rf"reset@((?:{_FRAMES})(?:\+{_FRAMES})*)", "reset@<F>[+<F>…]")
def _reset(m: re.Match) -> Overrides:
  return {"reset.frames": _frames_list(m.group(1)), "reset.target": "head"}


@pattern(rf"shrink_perturb@((?:{_FRAMES})(?:\+{_FRAMES})*)", "shrink_perturb@<F>[+<F>…]")
def _shrink_perturb(m: re.Match) -> Overrides:
  return {"shrink_perturb.frames": _frames_list(m.group(1)), "shrink_perturb.alpha": 0.8, "shrink_perturb.sigma": 0.2}


@pattern(rf"grow@((?:{_FRAMES})(?:\+{_FRAMES})*)", "grow@<F>[+<F>…]")
def _grow(m: re.Match) -> Overrides:
  frames = _frames_list(m.group(1))
  return {"network.hidden": 128, "injection.frames": frames,
          "injection.hidden": tuple(128 * 2 ** (i + 1) for i in range(len(frames)))}


def allowed() -> str:
  """The names and patterns, for error messages and --help."""
  return ", ".join(list(VARIANTS) + [usage for _, usage, _ in PATTERNS])


def get_variant(name: str) -> Overrides:
  """A variant name -> its overrides (a fresh dict); ValueError naming the allowed ones."""
  if name in VARIANTS:
    return dict(VARIANTS[name])
  for regex, _, builder in PATTERNS:
    m = regex.fullmatch(name)
    if m is not None:
      return builder(m)
  raise ValueError(f"unknown variant {name!r}; allowed: {allowed()} (frame counts like 2k, 50M)")
