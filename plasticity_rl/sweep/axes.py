"""Variant labels and hyperparameter axes: the text form of a set of overrides, and the grid of a sweep.

A variant's *label* (config.variant, the ROOT/<game>/<label>/ directory, every result row's `variant`) is
derived from its overrides by `derive_label`, so that one experiment has one name however it was asked for:

  <name>[+<name>…][+<field>=<value>…]     e.g. inject@50M, inject@50M+rr=0.5, drq+reset@2k, lr=1e-4+rr=0.25

The names are the variants file's (configs/variants.py: fixed names and patterns like inject@<F>), chosen
greedily, the one covering most fields first; the fields no name covers follow as field=value parts, sorted by
field path, each field by its short name (`SHORT`: rr, lr, batch, width, hidden, n_step) or its dotted path.
Values: true/false, integers with k/M/G in up to 3 digits (2k, 1.5M, 7.5k), floats in their shortest
form (0.5, 1, 1e-4, 6.25e-5), tuples as (a_b), strings as they are. `split_label` and `parse_value` read a label back
(configs/variants.get_variant, so that a derived label is a variant name too, checked by config.validate).

An axis (`--axis=learner.replay_ratio=0.25,0.5,1`, `parse_axis`) is one field and its values; the sweep's
variants are every --variants entry × the product of the axes (`grid`). The values are typed against the base
config (checks.type_axes) before the grid is made.

Pure functions: no config is imported here.
"""

import decimal
import itertools
import re
from typing import Any, Callable, Iterable, Sequence

from plasticity_rl.sweep.errors import SweepError

Overrides = dict[str, Any]

# Short names of the fields most swept; any other field is written with its dotted path.
SHORT = {
    "learner.learning_rate": "lr",
    "learner.replay_ratio": "rr",
    "learner.batch_size": "batch",
    "network.width": "width",
    "network.hidden": "hidden",
    "replay.n_step": "n_step",
}
LONG = {short: field for field, short in SHORT.items()}

_UNITS = (("G", 10**9), ("M", 10**6), ("k", 10**3))
FRAMES = r"[0-9][0-9_]*(?:\.[0-9_]+)?[kKMG]?"  # A frame count (or any integer) as a label writes it.
_FIELD = r"[A-Za-z_][A-Za-z0-9_.]*"


def parse_frames(text: str) -> int:
  """'2k' -> 2000, '50M' -> 50_000_000, '1.5M' -> 1_500_000, '2000' -> 2000 (exact: decimal arithmetic)."""
  m = re.fullmatch(r"([0-9][0-9_]*(?:\.[0-9_]+)?)([kKMG]?)", text.strip())
  if m is None:
    raise ValueError(f"bad frame count {text!r}: use an integer with an optional k, M or G suffix (2k, 50M, 1.5M)")
  value = decimal.Decimal(m.group(1).replace("_", "")) * dict(_UNITS, K=1000).get(m.group(2), 1)
  if value != value.to_integral_value():
    raise ValueError(f"bad frame count {text!r}: not a whole number of frames")
  return int(value)


def format_frames(n: int) -> str:
  """An integer with k, M or G where that takes at most 3 digits: 2000 -> '2k', 1_500_000 -> '1.5M', 1234 -> '1234'."""
  for suffix, unit in _UNITS:
    if n >= unit:
      scaled = (decimal.Decimal(n) / unit).normalize()
      if len(scaled.as_tuple().digits) <= 3:
        return format(scaled, "f") + suffix
  return str(n)


def format_value(value: Any) -> str:
  """A value as a label writes it (see the module's docstring)."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, int):
    return format_frames(value)
  if isinstance(value, float):
    if value == int(value) and abs(value) < 1e16:
      return str(int(value))
    if abs(value) < 1e-2 or abs(value) >= 1e16:
      return format(decimal.Decimal(repr(value)).normalize(), "e").replace("+", "")
    return repr(value)
  if isinstance(value, (tuple, list)):
    return "(" + "_".join(format_value(v) for v in value) + ")"
  return str(value)


def parse_value(text: str) -> Any:
  """A label's value text -> the value (untyped: the config gives the field's type): the inverse of
  format_value for numbers, booleans and numeric tuples; other text is a string."""
  if text in ("true", "false"):
    return text == "true"
  if text.startswith("(") and text.endswith(")"):
    return tuple(parse_value(t) for t in text[1:-1].split("_") if t)
  if re.fullmatch(FRAMES, text) and (not text[-1].isdigit() or "." not in text):
    return parse_frames(text)
  try:
    return float(text)
  except ValueError:
    return text


def part(field: str, value: Any) -> str:
  """One field=value part of a label: 'learner.replay_ratio', 0.5 -> 'rr=0.5'."""
  return f"{SHORT.get(field, field)}={format_value(value)}"


def split_label(label: str) -> list[str]:
  """A label's parts: 'inject@25M+75M+rr=0.5' -> ['inject@25M+75M', 'rr=0.5'] (a frame count after '+'
  belongs to the name before it)."""
  parts = []
  for token in label.split("+"):
    if parts and "=" not in parts[-1] and re.fullmatch(FRAMES, token):
      parts[-1] += "+" + token
    else:
      parts.append(token)
  return parts


def parse_part(text: str) -> tuple[str, Any] | None:
  """'rr=0.5' -> ('learner.replay_ratio', 0.5); None for a part that is a name (no '=')."""
  m = re.fullmatch(rf"({_FIELD})=(.*)", text)
  if m is None:
    return None
  return LONG.get(m.group(1), m.group(1)), parse_value(m.group(2))


def same(a: Any, b: Any) -> bool:
  """Equal values, a list equal to the tuple of its items (a manifest's JSON holds tuples as lists)."""
  if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
  return a == b and isinstance(a, bool) == isinstance(b, bool)


def same_overrides(a: Overrides, b: Overrides) -> bool:
  return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)


def derive_label(overrides: Overrides, names: Callable[[Overrides], Iterable[tuple[str, Overrides]]],
                 empty: str = "baseline") -> str:
  """The one label of `overrides`: `names(overrides)` lists the named variants whose overrides it holds (in
  the variants file's order); the one covering most fields is taken, then the next for the fields left,
  and the fields no name covers are field=value parts sorted by field path. No overrides: `empty`."""
  rest, picked = dict(overrides), []
  while rest:
    found = [(name, sub) for name, sub in names(rest)
             if sub and all(k in rest and same(rest[k], v) for k, v in sub.items())]
    if not found:
      break
    name, sub = max(found, key=lambda item: len(item[1]))  # The first of the largest.
    picked.append(name)
    rest = {k: v for k, v in rest.items() if k not in sub}
  return "+".join(picked + [part(k, rest[k]) for k in sorted(rest)]) or empty


def labeller(variants_module, named: dict[str, Overrides]) -> Callable[[Overrides], str]:
  """The variants file's `label` (configs/variants.py); for a file without one, derive_label over the variants
  named on the command line (`named`: {name: overrides})."""
  label = getattr(variants_module, "label", None)
  return label if label is not None else lambda overrides: derive_label(overrides, lambda rest: named.items())


def split_values(text: str) -> list[str]:
  """'0.25,0.5,1' -> ['0.25', '0.5', '1']; commas inside parentheses stay: '(1,2),(3,)' -> ['(1,2)', '(3,)']."""
  out, depth, current = [], 0, ""
  for ch in text:
    depth += {"(": 1, ")": -1}.get(ch, 0)
    if ch == "," and depth == 0:
      out.append(current)
      current = ""
    else:
      current += ch
  out.append(current)
  return [v.strip() for v in out]


def parse_axis(text: str) -> tuple[str, list[str]]:
  """'learner.replay_ratio=0.25,0.5,1' (or 'rr=…') -> ('learner.replay_ratio', ['0.25', '0.5', '1']); the values
  as typed, k/M/G integers written out ('2k' -> '2000'). Typed against the config by checks.type_axes."""
  m = re.fullmatch(rf"\s*(?:--?config\.)?({_FIELD})=(.*)", text, re.DOTALL)
  if m is None:
    raise SweepError(f"--axis {text!r}: expected field=value,value,…, e.g. learner.replay_ratio=0.25,0.5,1")
  field = LONG.get(m.group(1), m.group(1))
  values = split_values(m.group(2))
  if not all(values):
    raise SweepError(f"--axis {text!r}: an empty value; give field=value,value,…")
  values = [str(parse_frames(v)) if re.fullmatch(r"[0-9][0-9_.]*[kKMG]", v) else v for v in values]
  return field, values


def grid(named: dict[str, Overrides], axes: Sequence[tuple[str, Sequence[Any]]], label: Callable[[Overrides], str],
         keep: dict[str, Overrides] | None = None) -> tuple[dict[str, Overrides], list[str]]:
  """Every named variant × the product of the (typed) axes -> ({label: overrides}, notes).

  Each combination is labelled by `label` (derive_label with the variants file's names), so equal overrides
  are one variant (listed once) and a name typed in another form gets its canonical one; `keep`
  ({label: overrides} a sweep root already holds) keeps a root's earlier name for the same overrides. A field
  an axis and a named variant both set, or set by two axes, is an error. The notes say which typed names were
  renamed or merged.
  """
  keep = keep or {}
  fields = [field for field, _ in axes]
  twice = sorted({f for f in fields if fields.count(f) > 1})
  if twice:
    raise SweepError(f"--axis {twice[0]} is given twice: give its values in one --axis")
  out, notes = {}, []
  for name, base in named.items():
    both = [f for f in fields if f in base]
    if both:
      raise SweepError(f"variant {name!r} sets {both[0]}, which --axis {both[0]} also sets: drop one")
    for point in itertools.product(*[[(field, v) for v in values] for field, values in axes]):
      overrides = {**base, **dict(point)}
      old = [k for k, v in keep.items() if same_overrides(v, overrides)]
      new = old[0] if old else label(overrides)
      if new in out:
        if not same_overrides(out[new], overrides):
          raise SweepError(f"variants {new!r} and {name!r} would share the label {new!r} with other overrides")
        notes.append(f"variant {name!r}" + (f" with {dict(point)}" if point else "") +
                     f" is {new!r}, listed already: one experiment, run once")
        continue
      if not point and new != name:
        notes.append(f"variant {name!r} is labelled {new!r}" + (" (this root's name for it)" if old else
                                                                 " (its canonical name)"))
      out[new] = overrides
  return out, notes
