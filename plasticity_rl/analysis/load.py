"""Reads evaluation results into one tidy DataFrame, with clear errors.

Two inputs, one format (recorder.py's `eval.csv`): a run workdir holds an
`eval.csv` with one row per evaluation episode; any other tidy CSV has the same
columns, with `agent` accepted for `variant` and `return` for `episode_return`.
Every row keeps its `source` file, so a run found twice is an error, not a merge.
Within one file, rows written twice are caught too: a run's eval.csv with its
config.json beside it must hold exactly eval.num_episodes rows per evaluation
(eval.final_num_episodes, when set, for the one at total_frames): more is an
error naming the lines, fewer (an evaluation cut short by a kill) an
AnalysisWarning; in any other CSV, an evaluation whose rows are not together
(rows appended again later) is an AnalysisWarning naming the lines (equal
rows alone are not: equal episodes are common). Negative frames are an error.
A workdir whose `eval.csv` is missing or has no rows yet is an *empty run*:
returned for the gaps report, never dropped silently.

`--runs` inputs (`load_results`'s `runs`) are paths or globs of: run directories (a directory with a
`config.json` or an `eval.csv`: `is_run_dir`), sweep roots (a `sweep.json` lists their runs, started or not),
any directory above them (the run directories and sweep roots under it), and `.csv` files. Anything else a
glob matches — a sweep's `logs/`, a run's `tb/` event files or `checkpoints/`, the CSVs an earlier aggregate
wrote into its --out (marked by OUTPUTS_MARKER) — is skipped and counted in `Results.skipped`.
"""

import glob
import json
import os
from typing import Iterable, NamedTuple, Sequence
import warnings

import numpy as np
import pandas as pd

from plasticity_rl import atari_games

COLUMNS = ("game", "variant", "seed", "frames", "return")
_SYNONYMS = {"variant": ("agent",), "return": ("episode_return",)}
RUN_KEY = ["variant", "game", "seed"]


class AnalysisError(ValueError):
  """Bad or unusable input; the message names the file, column or game."""


class AnalysisWarning(UserWarning):
  """Input that is read but looks wrong (e.g. identical rows); the message names the file and lines."""


class Results(NamedTuple):
  episodes: pd.DataFrame  # COLUMNS + source: one row per evaluation episode.
  empty_runs: list[str]  # Workdirs with no evaluation rows (a description each).
  skipped: tuple[str, ...] = ()  # --runs matches that are no run, sweep root or CSV (logs/, tb/ files, …).


def expand(patterns: Iterable[str], what: str) -> list[str]:
  """Glob patterns -> sorted paths; a pattern that matches nothing is an error."""
  paths = []
  for pattern in patterns:
    matches = sorted(glob.glob(os.path.expanduser(pattern)))
    if not matches:
      raise AnalysisError(f"{what} pattern {pattern!r} matches no file or directory")
    paths.extend(m for m in matches if m not in paths)
  return paths


def _numeric(df: pd.DataFrame, column: str, path: str, integer: bool) -> pd.Series:
  values = pd.to_numeric(df[column], errors="coerce")
  bad = ~np.isfinite(values.to_numpy(dtype=float))
  if integer:
    bad |= ~bad & (values.fillna(0) % 1 != 0).to_numpy()
  if bad.any():
    rows = np.flatnonzero(bad)
    shown = ", ".join(f"line {i + 2}: {df[column].iloc[i]!r}" for i in rows[:5])
    more = f" (and {len(rows) - 5} more)" if len(rows) > 5 else ""
    kind = "an integer" if integer else "a finite number"
    raise AnalysisError(f"{path}: column {column!r} must be {kind} in every row; bad: {shown}{more}")
  return values.astype(np.int64) if integer else values.astype(np.float64)


def canonical_games(names: pd.Series, where: str) -> pd.Series:
  """Maps every name to its canonical spelling; unknown games are an error."""
  mapping = {name: atari_games.canonical_game(str(name)) for name in names.unique()}
  unknown = sorted(str(name) for name, game in mapping.items() if game is None)
  if unknown:
    raise AnalysisError(f"{where}: unknown game(s) {unknown}: not among the 57 games of the "
                        "human/random score table (plasticity_rl/data/atari57_scores.csv)")
  return names.map(mapping)


def read_csv(path: str) -> pd.DataFrame:
  """One tidy CSV -> validated rows with COLUMNS + source (may be empty)."""
  try:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
  except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
    raise AnalysisError(f"{path}: cannot read as CSV: {e}") from e
  except pd.errors.EmptyDataError:
    df = pd.DataFrame()
  for column, synonyms in _SYNONYMS.items():
    if column not in df.columns:
      for synonym in synonyms:
        if synonym in df.columns:
          df = df.rename(columns={synonym: column})
          break
  missing = [c for c in COLUMNS if c not in df.columns]
  if missing:
    names = [f"{c} (or {'/'.join(_SYNONYMS[c])})" if c in _SYNONYMS else c for c in missing]
    raise AnalysisError(f"{path}: missing column(s) {', '.join(names)}; found {list(df.columns)}")
  df = df[list(COLUMNS)].copy()
  if df.empty:
    return df.assign(source=path)
  for column in ("variant", "game"):
    blank = df[column].str.strip() == ""
    if blank.any():
      raise AnalysisError(f"{path}: column {column!r} is empty at line(s) {list(np.flatnonzero(blank)[:5] + 2)}")
  df["variant"] = df["variant"].str.strip()
  df["game"] = canonical_games(df["game"], path)
  df["seed"] = _numeric(df, "seed", path, integer=True)
  df["frames"] = _numeric(df, "frames", path, integer=True)
  df["return"] = _numeric(df, "return", path, integer=False)
  negative = np.flatnonzero(df["frames"].to_numpy() < 0)
  if len(negative):
    raise AnalysisError(f"{path}: column 'frames' must be >= 0; negative at {_lines(negative)}")
  return df.assign(source=path)


def _lines(rows, limit: int = 8) -> str:
  """'line(s) 2, 5, 9 (and 3 more)' for 0-based data rows (line 1 is the header)."""
  rows = list(rows)
  shown = ", ".join(str(i + 2) for i in rows[:limit])
  return f"line{'s' if len(rows) > 1 else ''} {shown}" + (f" (and {len(rows) - limit} more)" if len(rows) > limit
                                                          else "")


def _run_config(path: str) -> dict | None:
  """The config.json beside an eval.csv (its run's), or None."""
  try:
    with open(os.path.join(os.path.dirname(path), "config.json")) as f:
      config = json.load(f)
    return config if isinstance(config["eval"]["num_episodes"], int) else None
  except (OSError, ValueError, KeyError, TypeError):
    return None


def check_rows_once(df: pd.DataFrame, path: str) -> None:
  """Rows written twice within one file (see the module docstring); `df` as read_csv returns it."""
  config = _run_config(path) if os.path.basename(path) == "eval.csv" else None
  groups = df.groupby(RUN_KEY + ["frames"], sort=True).indices.items()  # Positions in file order.
  if config is None:
    split = [(key, rows) for key, rows in groups if rows[-1] - rows[0] + 1 != len(rows)]
    if split:
      (variant, game, seed, frames), rows = split[0]
      warnings.warn(f"{path}: the rows of the evaluation of variant={variant} game={game} seed={seed} at "
                    f"{frames:,} frames are not together ({_lines(rows)}; {len(split)} such evaluation(s)): "
                    "rows written twice?", AnalysisWarning, stacklevel=3)
    return
  episodes, final = config["eval"]["num_episodes"], config["eval"].get("final_num_episodes") or 0
  for (variant, game, seed, frames), rows in groups:
    expected = final if final and frames >= config.get("total_frames", np.inf) else episodes
    if len(rows) == expected:
      continue
    message = (f"{path}: the evaluation of variant={variant} game={game} seed={seed} at {frames:,} frames has "
               f"{len(rows)} rows ({_lines(rows)}), the run's config.json says {expected} episodes")
    if len(rows) > expected:
      raise AnalysisError(message + ": rows written twice (e.g. by two processes on one workdir); remove the "
                          "extra rows or re-run")
    warnings.warn(message + ": an evaluation cut short (the run was stopped while writing it)", AnalysisWarning,
                  stacklevel=3)


def _describe_empty_run(workdir: str) -> str:
  """'variant=… game=… seed=… (workdir)' from config.json when there is one."""
  try:
    with open(os.path.join(workdir, "config.json")) as f:
      config = json.load(f)
    return f"variant={config['variant']} game={config['game']} seed={config['seed']} ({workdir})"
  except (OSError, ValueError, KeyError, TypeError):
    return workdir


def sweep_workdirs(path: str) -> list[str]:
  """A sweep root (with the launcher's sweep.json) -> its runs' workdirs, started or not; else [path]."""
  manifest = os.path.join(path, "sweep.json")
  if not os.path.isdir(path) or not os.path.exists(manifest):
    return [path]
  try:
    with open(manifest) as f:
      names = [run["name"] for run in json.load(f)["runs"]]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise AnalysisError(f"{manifest}: not a readable sweep manifest ({e})") from None
  return [os.path.join(path, name) for name in names]  # Relative to the root: a moved sweep still reads.


RUN_FILES = ("config.json", "eval.csv")  # A directory with one of them is a run's workdir.
_NOT_RUNS = ("checkpoints", "tb", "logs")  # Directories of a run or a sweep never searched for runs.
OUTPUTS_MARKER = ".aggregate_outputs"  # In plasticity-rl-aggregate's --out: its CSVs are results, not inputs.


def is_run_dir(path: str) -> bool:
  return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, name)) for name in RUN_FILES)


def _is_sweep_root(path: str) -> bool:
  return os.path.isdir(path) and os.path.isfile(os.path.join(path, "sweep.json"))


def find_runs(path: str) -> list[str]:
  """A run directory or sweep root -> [path]; another directory -> the run directories and sweep roots
  under it (sorted; not searched below them, nor in checkpoints/, tb/ or logs/); anything else -> []."""
  if is_run_dir(path) or _is_sweep_root(path):
    return [path]
  if not os.path.isdir(path):
    return []
  found = []
  for directory, subdirs, _ in os.walk(path):
    subdirs.sort()
    keep = []
    for name in subdirs:
      sub = os.path.join(directory, name)
      if is_run_dir(sub) or _is_sweep_root(sub):
        found.append(sub)
      elif name not in _NOT_RUNS and not os.path.isfile(os.path.join(sub, "_CHECKPOINT_METADATA")):
        keep.append(name)
    subdirs[:] = keep
  return sorted(found)


def resolve_runs(patterns: Iterable[str]) -> tuple[list[str], list[str]]:
  """--runs paths or globs -> (run workdirs, sweep roots' runs and .csv files, in order; the matches skipped).

  A pattern that matches nothing is an error (a typo); a match that is not a run is skipped (see the
  module docstring)."""
  paths, skipped = [], []
  for match in expand(patterns, "--runs"):
    if os.path.isfile(match):
      outputs = os.path.isfile(os.path.join(os.path.dirname(match), OUTPUTS_MARKER))  # An earlier aggregate's.
      found = [match] if match.endswith(".csv") and not outputs else []
    else:
      found = [p for root in find_runs(match) for p in sweep_workdirs(root)]
    if not found:
      skipped.append(match)
    paths.extend(os.path.normpath(p) for p in found if os.path.normpath(p) not in paths)
  return paths, skipped


def skipped_line(skipped: Sequence[str], shown: int = 3) -> str:
  """One line: how many --runs matches were skipped, and the first few."""
  more = f", … ({len(skipped) - shown} more)" if len(skipped) > shown else ""
  return (f"skipped {len(skipped)} --runs path(s) that are no run directory (config.json / eval.csv), sweep "
          f"root (sweep.json) or .csv file: {', '.join(skipped[:shown])}{more}")


def load_results(runs: Iterable[str] = (), csvs: Iterable[str] = ()) -> Results:
  """Reads run workdirs (or their eval.csv files) and tidy CSVs; globs allowed.

  A `runs` match is a workdir (its eval.csv), a sweep root (its sweep.json lists
  the workdirs: runs not started yet are reported as gaps), a directory above
  them, or a .csv file read as a tidy CSV, so shell-expanded paths work too;
  other matches are skipped (Results.skipped).
  """
  frames, empty_runs = [], []
  paths, skipped = resolve_runs(runs)
  for path in paths:
    if not os.path.exists(path):  # Only a sweep manifest names paths that may not exist.
      empty_runs.append(f"{path}: not started (no workdir)")
      continue
    if os.path.isdir(path):
      eval_path = os.path.join(path, "eval.csv")
      df = read_csv(eval_path) if os.path.exists(eval_path) else None
      if df is not None:
        check_rows_once(df, eval_path)
      if df is None or df.empty:
        reason = "no eval.csv" if df is None else "eval.csv has no rows"
        empty_runs.append(f"{_describe_empty_run(path)}: {reason}")
        continue
    else:
      df = read_csv(path)
      check_rows_once(df, path)
      if df.empty:
        empty_runs.append(f"{path}: no rows")
        continue
    frames.append(df)
  for path in expand(csvs, "--csv"):
    df = read_csv(path)
    check_rows_once(df, path)
    if df.empty:
      raise AnalysisError(f"{path}: no data rows")
    frames.append(df)
  if not frames:
    raise AnalysisError("no evaluation rows in any input" +
                        (f"; empty runs: {empty_runs}" if empty_runs else "") +
                        (f"; {skipped_line(skipped)}" if skipped else ""))
  episodes = pd.concat(frames, ignore_index=True)
  sources = episodes.groupby(RUN_KEY)["source"].unique()
  twice = sources[sources.map(len) > 1]
  if len(twice):
    (variant, game, seed), paths = next(iter(twice.items()))
    raise AnalysisError(f"run variant={variant} game={game} seed={seed} appears in more than one "
                        f"input: {list(paths)} ({len(twice)} such run(s)); pass each run once")
  return Results(episodes, empty_runs, tuple(skipped))
