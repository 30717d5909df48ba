"""The launcher's inputs made canonical: game and set names, seeds, variants, overrides, the --config spec.

Each function takes what a user typed (--games, --seeds/--num_seeds, --variants with their variants file,
--override/--config.x=y, --config) and returns the sweep's own form, or raises SweepError naming the input.
`safe_name` and `format_value` turn names and override values into path components and flag text.
"""

import os
import re
from typing import Any, Iterable, Sequence

from plasticity_rl import atari_games
from plasticity_rl import cli
from plasticity_rl.sweep.errors import SweepError

RESERVED_FIELDS = ("game", "variant", "seed", "num_seeds")  # The sweep sets these; overrides may not.


def resolve_games(names: Iterable[str]) -> list[str]:
  """Game names and set names (atari57, atari26, atari5) -> canonical names, in order, without repeats."""
  games = []
  for name in names:
    name = name.strip()
    if not name:
      continue
    if name.lower() in atari_games.GAME_SETS:
      found = list(atari_games.GAME_SETS[name.lower()])
    else:
      game = atari_games.canonical_game(name)
      if game is None:
        from plasticity_rl.envs import atari  # pylint: disable=g-import-not-at-top  (imports envpool)
        try:
          game = atari.resolve_game(name)
        except ValueError as e:
          raise SweepError(f"--games: {e}; or a set: {', '.join(atari_games.GAME_SETS)}") from None
      found = [game]
    games.extend(g for g in found if g not in games)
  if not games:
    raise SweepError(f"--games: no game given; name games or a set ({', '.join(atari_games.GAME_SETS)})")
  return games


def resolve_seeds(seeds: Sequence[int | str] | None = None, num_seeds: int | None = None) -> list[int]:
  """--seeds=0,1,2 or --num_seeds=3 (seeds 0..2); neither: [0]."""
  if seeds and num_seeds is not None:
    raise SweepError("give --seeds or --num_seeds, not both")
  if num_seeds is not None:
    if num_seeds < 1:
      raise SweepError(f"--num_seeds must be ≥ 1, got {num_seeds}")
    return list(range(num_seeds))
  if not seeds:
    return [0]
  out = []
  for s in seeds:
    try:
      seed = int(s)
    except ValueError:
      raise SweepError(f"--seeds: {s!r} is not an integer") from None
    if seed < 0:
      raise SweepError(f"--seeds: seeds must be ≥ 0, got {seed}")
    if seed not in out:
      out.append(seed)
  return out


def load_variants(path: str):
  """Imports a variants file (configs/variants.py): a module with get_variant(name) and allowed()."""
  if not os.path.isfile(path):
    raise SweepError(f"variants file {path} does not exist")
  return cli.load_file(path, "plasticity_rl_sweep_variants")


def resolve_variants(names: Iterable[str], variants_module) -> dict[str, dict[str, Any]]:
  """Variant names -> {name: overrides}; an unknown name is a SweepError naming the allowed ones."""
  out = {}
  for name in names:
    name = name.strip()
    if not name or name in out:
      continue
    try:
      overrides = variants_module.get_variant(name)
    except ValueError as e:
      raise SweepError(f"--variants: {e}") from None
    bad = [k for k in overrides if k in RESERVED_FIELDS]
    if bad:
      raise SweepError(f"variant {name!r} sets {bad}: the sweep sets game, variant, seed and num_seeds itself")
    out[name] = overrides
  if not out:
    raise SweepError(f"--variants: no variant given; allowed: {variants_module.allowed()}")
  return out


def safe_name(name: str) -> str:
  """A path component: letters, digits and . _ - + @ = kept, anything else -> _."""
  safe = re.sub(r"[^A-Za-z0-9._+@=-]", "_", name)
  if not safe or safe.strip(".") == "" or safe.startswith("-"):
    safe = "_" + safe
  return safe


def format_value(value: Any) -> str:
  """A Python override value -> the text config_flags parses back to it."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, (tuple, list)):
    return "(" + ",".join(repr(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  if isinstance(value, str):
    return value
  return repr(value)


def parse_override(text: str) -> tuple[str, str]:
  """'learner.replay_ratio=0.5' or '--config.learner.replay_ratio=0.5' -> ('learner.replay_ratio', '0.5')."""
  m = re.fullmatch(r"(?:--?)?(?:config\.)?([A-Za-z_][A-Za-z0-9_.]*)=(.*)", text.strip(), re.DOTALL)
  if m is None:
    raise SweepError(f"override {text!r}: expected field=value, e.g. learner.replay_ratio=0.5 "
                     "(or --config.learner.replay_ratio=0.5)")
  key, value = m.groups()
  if key in RESERVED_FIELDS:
    use = "--seeds_per_process" if key == "num_seeds" else "--games, --variants, --seeds"
    raise SweepError(f"override {text!r}: the sweep sets config.{key} itself (use {use})")
  return key, value


def config_spec(config: str) -> str:
  """'configs/dqn.py:smoke' -> '/abs/configs/dqn.py:smoke' (cli.config_path: from any directory); SweepError
  when the file is missing."""
  path, sep, arg = config.partition(":")
  path = os.path.abspath(cli.config_path(path))
  if not os.path.isfile(path):
    raise SweepError(f"--config: {path} does not exist")
  return path + sep + arg


def same_config(a: str | None, b: str | None) -> bool:
  """Whether two config_specs name the same file and arg (configs/… and plasticity_rl/configs/… are one file)."""
  if a is None or b is None:
    return a == b
  (path_a, _, arg_a), (path_b, _, arg_b) = a.partition(":"), b.partition(":")
  return arg_a == arg_b and os.path.realpath(path_a) == os.path.realpath(path_b)
