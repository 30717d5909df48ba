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
  hare_tortoise     Hare & Tortoise: an EMA tortoise (0.999), the hare reset to it every 1M frames.
  adaptive_rr       replay ratio 0.0625 until the critic's FAU settles, then 0.25.
  expansion         Neuroplastic-Expansion-style growth and pruning (configs/expansion.py).

Patterns (any frame counts, so that short CPU sweeps can use them too):
  inject@<F>[+<F>…]  injections at those frames, e.g. inject@2k, inject@1.5M+3M.
  inject@<F>[+<F>…]-freeze_encoder, inject@<F>[+<F>…]-reset_opt   the ablations at those frames.
  reset@<F>[+<F>…], shrink_perturb@<F>[+<F>…]   the same for resets / shrink-and-perturb.
  grow@<F>[+<F>…]    network.hidden=128, injections growing the head to
                     256, 512, … units (doubling), e.g. grow@2k+3k.
Frame counts: an integer with an optional k (×1e3), M (×1e6) or G (×1e9),
e.g. 2000, 2k, 50M, 1.5M; underscores are allowed (50_000_000).

Labels: names and field=value parts joined by '+' (`label`, sweep/axes.py), e.g.
inject@50M+rr=0.5, drq+reset@2k, lr=1e-4+rr=0.25 (rr, lr, batch, width, hidden,
n_step: learner.replay_ratio, learner.learning_rate, learner.batch_size,
network.width, network.hidden, replay.n_step; any other field by its dotted
path). `label(overrides)` is the one name of a set of overrides: a name of this
file where one has exactly those overrides (drq, not learner.augment=random_shift;
grow, not grow@50M+100M), the frames in their shortest form (inject@2k, not
inject@2000); `get_variant` reads every label back. The sweep labels each of its
variants so (plasticity-rl-sweep --axis=…), and configs/injection.py its presets.

To add a variant, add an entry to VARIANTS (a fixed name) or a function
decorated with @frames_pattern(prefix, field[, suffix]) (a family
<prefix>@<F>[+<F>…]<suffix>) or @pattern(regex, usage[, inverse]) (any family;
without an inverse, `label` never picks it). E.g. when `reset` exists in the config:
  VARIANTS["reset@50M"] = {"reset.frames": (50_000_000,)}
"""

import re
from typing import Any, Callable

from plasticity_rl.sweep import axes

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
    "hare_tortoise": {"hare_tortoise.enabled": True},  # interventions/hare_tortoise.py (its defaults).
    "adaptive_rr": {"learner.adaptive_replay_ratio.enabled": True},
    # configs/expansion.py at paper scale (its values follow the Neuroplastic Expansion code, expansion.py).
    "expansion": {"expansion.enabled": True, "expansion.initial_fraction": 0.25, "expansion.grow_fraction": 0.1,
                  "expansion.grow_schedule": "cosine", "expansion.period_frames": 5_000_000,
                  "expansion.start_frames": 200_000, "expansion.prune_tau": 0.0, "expansion.prune_cap": 0.4,
                  "expansion.review_batches": 31_250, "expansion.review_fraction": 0.3,
                  "expansion.review_probability": 0.5, "expansion.review_window": 5,
                  "expansion.review_tolerance": 0.002},
}

# (compiled regex, usage, builder(match) -> overrides, inverse(overrides) -> name or None), tried in order after
# VARIANTS; the inverse names the pattern's variant whose overrides `overrides` holds (for `label`).
PATTERNS: list[tuple[re.Pattern, str, Callable[[re.Match], Overrides], Callable[[Overrides], str | None]]] = []

parse_frames = axes.parse_frames  # '2k' -> 2000, '50M' -> 50_000_000, '1.5M' -> 1_500_000.


def _frames_list(text: str) -> tuple[int, ...]:
  return tuple(parse_frames(part) for part in text.split("+"))


def pattern(regex: str, usage: str, inverse: Callable[[Overrides], str | None] = lambda overrides: None):
  """Registers a family of variant names; the builder gets the re.Match. `inverse` (optional) names the
  family's variant whose overrides a set of overrides holds, so that `label` finds it."""
  def decorator(builder: Callable[[re.Match], Overrides]):
    PATTERNS.append((re.compile(regex), usage, builder, inverse))
    return builder
  return decorator


def frames_pattern(prefix: str, field: str, suffix: str = ""):
  """A family <prefix>@<F>[+<F>…]<suffix> whose builder sets `field` to the frame counts (and more): its
  inverse reads them back from `field`, so one set of frames has one name (frames as format_frames writes them)."""
  def inverse(overrides: Overrides) -> str | None:
    frames = overrides.get(field)
    if not isinstance(frames, (tuple, list)) or not frames or not all(
        isinstance(f, int) and not isinstance(f, bool) and f >= 0 for f in frames):
      return None
    return f"{prefix}@{'+'.join(axes.format_frames(f) for f in frames)}{suffix}"
  regex = rf"{re.escape(prefix)}@((?:{axes.FRAMES})(?:\+{axes.FRAMES})*){re.escape(suffix)}"
  return pattern(regex, f"{prefix}@<F>[+<F>…]{suffix}", inverse)


@frames_pattern("inject", "injection.frames")
def _inject(m: re.Match) -> Overrides:
  return {"injection.frames": _frames_list(m.group(1))}


@frames_pattern("inject", "injection.frames", "-freeze_encoder")
def _inject_freeze_encoder(m: re.Match) -> Overrides:
  return {"injection.frames": _frames_list(m.group(1)), "injection.freeze_encoder": True}


@frames_pattern("inject", "injection.frames", "-reset_opt")
def _inject_reset_opt(m: re.Match) -> Overrides:
  return {"injection.frames": _frames_list(m.group(1)), "injection.reset_optimizer": True}


@frames_pattern("reset", "reset.frames")
def _reset(m: re.Match) -> Overrides:
  return {"reset.frames": _frames_list(m.group(1)), "reset.target": "head"}


@frames_pattern("shrink_perturb", "shrink_perturb.frames")
def _shrink_perturb(m: re.Match) -> Overrides:
  return {"shrink_perturb.frames": _frames_list(m.group(1)), "shrink_perturb.alpha": 0.8, "shrink_perturb.sigma": 0.2}


@frames_pattern("grow", "injection.frames")
def _grow(m: re.Match) -> Overrides:
  frames = _frames_list(m.group(1))
  return {"network.hidden": 128, "injection.frames": frames,
          "injection.hidden": tuple(128 * 2 ** (i + 1) for i in range(len(frames)))}


def allowed() -> str:
  """The names and patterns, for error messages and --help."""
  return ", ".join(list(VARIANTS) + [usage for _, usage, _, _ in PATTERNS] + ["<name>+<field>=<value>[+…]"])


def _named(name: str) -> Overrides | None:
  """A fixed name's or a pattern's overrides (a fresh dict); None for another name."""
  if name in VARIANTS:
    return dict(VARIANTS[name])
  for regex, _, builder, _ in PATTERNS:
    m = regex.fullmatch(name)
    if m is not None:
      return builder(m)
  return None


def _is_field(field: str) -> bool:
  """Whether the config schema (config.base_config) has this leaf field; imports it only for a label's parts."""
  from plasticity_rl import config as config_lib  # pylint: disable=g-import-not-at-top  (imports jax)
  import ml_collections  # pylint: disable=g-import-not-at-top
  value = config_lib.base_config()
  for key in field.split("."):
    if not isinstance(value, ml_collections.ConfigDict) or key not in value:
      return False
    value = value[key]
  return not isinstance(value, ml_collections.ConfigDict)


def get_variant(name: str) -> Overrides:
  """A variant name or label -> its overrides (a fresh dict); ValueError naming the allowed ones.

  A label (`label`) is names and field=value parts joined by '+' (inject@50M+rr=0.5, lr=1e-4+rr=0.25): its
  overrides are its names' and its parts' together (the values untyped: the config types them).
  """
  overrides = _named(name)
  if overrides is not None:
    return overrides
  parts = axes.split_label(name)
  out: Overrides = {}
  for text in parts:
    field_value = axes.parse_part(text)
    if field_value and not _is_field(field_value[0]):
      raise ValueError(f"unknown variant {name!r}: the config has no field {field_value[0]!r}")
    sub = {field_value[0]: field_value[1]} if field_value else (_named(text) if len(parts) > 1 else None)
    if sub is None:
      raise ValueError(f"unknown variant {name!r}" + (f" (its part {text!r})" if len(parts) > 1 else "") +
                       f"; allowed: {allowed()} (frame counts like 2k, 50M)")
    both = [k for k in sub if k in out and not axes.same(out[k], sub[k])]
    if both:
      raise ValueError(f"variant {name!r} sets {both[0]} twice, to {out[both[0]]!r} and {sub[both[0]]!r}")
    out.update(sub)
  return out


def named_in(overrides: Overrides) -> list[tuple[str, Overrides]]:
  """The named variants (fixed names, then the patterns' own) whose overrides `overrides` holds, in order."""
  out = []
  for name, sub in VARIANTS.items():
    if sub and all(k in overrides and axes.same(overrides[k], v) for k, v in sub.items()):
      out.append((name, dict(sub)))
  for _, _, _, inverse in PATTERNS:
    name = inverse(overrides)
    sub = _named(name) if name else None
    if sub and all(k in overrides and axes.same(overrides[k], v) for k, v in sub.items()):
      out.append((name, sub))
  return out


def label(overrides: Overrides) -> str:
  """The one label of a set of overrides ({} -> 'baseline'): the names of this file that cover them, most fields
  first, then field=value parts (sweep/axes.derive_label). Equal overrides get one label, however named:
  {'injection.frames': (50_000_000, 100_000_000)} -> 'inject@50M+100M', {'injection.frames': (2000,),
  'learner.replay_ratio': 0.5} -> 'inject@2k+rr=0.5', {'learner.augment': 'random_shift'} -> 'drq'."""
  return axes.derive_label(overrides, named_in)
