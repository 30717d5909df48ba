"""Per-game learning curves over seeds (mean and bootstrap CI), and the runs' intervention events.

`per_game_curves`: for each variant, game and evaluation frame, the mean over seeds of
the evaluation return (raw score; scores.curves' per-run points) with a 95 % percentile
CI from resampling the seeds that evaluated at that frame (stats.resample_means); NaN
with one seed, flagged `few_runs` with fewer than stats.MIN_RUNS.

`events`: the event rows (injection, reset, …) of each run's metrics.jsonl, found beside
the eval.csv it was read from (a tidy CSV from elsewhere has none). A long run's
metrics.jsonl holds ~10⁵ rows, few of them events, so only lines that mention "event"
are parsed; as recorder.read_metrics does, a torn last line (no newline) is left out and a
damaged line is an error naming it.
"""

import json
import os

import numpy as np
import pandas as pd

from plasticity_rl.analysis import stats
from plasticity_rl.analysis.load import RUN_KEY, AnalysisError

COLUMNS = ("variant", "game", "frames", "mean", "lo", "hi", "seeds", "few_runs")
EVENT_COLUMNS = ("variant", "game", "seed", "frames", "name")


def per_game_curves(curve: pd.DataFrame, reps: int, seed: int) -> pd.DataFrame:
  """scores.curves rows -> one row per (variant, game, frames): COLUMNS."""
  rows = []
  for (variant, game), runs in curve.groupby(["variant", "game"], sort=True):
    table = runs.pivot(index="seed", columns="frames", values="return")  # [seeds, frames], NaN where not evaluated.
    values = table.to_numpy(dtype=np.float64)
    counts = np.isfinite(values).sum(axis=0)
    mean = np.nanmean(values, axis=0)
    lo = np.full(len(table.columns), np.nan)
    hi = lo.copy()
    if (counts > 1).any():
      lo, hi = stats.percentile_ci(stats.resample_means(values, reps, seed))
      lo, hi = np.where(counts > 1, lo, np.nan), np.where(counts > 1, hi, np.nan)
    for i, frames in enumerate(table.columns):
      rows.append(dict(variant=variant, game=game, frames=int(frames), mean=mean[i], lo=lo[i], hi=hi[i],
                       seeds=int(counts[i]), few_runs=stats.few(counts[i])))
  return pd.DataFrame(rows, columns=list(COLUMNS))


def read_events(path: str) -> list[tuple[int, str]]:
  """(frames, name) of the "event" rows of one metrics.jsonl."""
  out = []
  with open(path, encoding="utf-8", errors="replace") as f:
    for number, line in enumerate(f, 1):
      if '"event"' not in line or not line.endswith("\n"):
        continue
      try:
        row = json.loads(line)
        if row.get("kind") == "event":
          out.append((int(row["frames"]), str(row.get("name", "event"))))
      except (ValueError, KeyError, TypeError, AttributeError):
        raise AnalysisError(f"{path} line {number}: not a JSON row with \"frames\"; fix or delete that line") from None
  return out


def events(episodes: pd.DataFrame) -> pd.DataFrame:
  """The event rows of the runs' metrics.jsonl (beside each run's eval.csv): EVENT_COLUMNS."""
  rows = []
  for (variant, game, seed), sources in episodes.groupby(RUN_KEY, sort=True)["source"]:
    for source in sources.unique():
      path = os.path.join(os.path.dirname(str(source)), "metrics.jsonl")
      if os.path.basename(str(source)) != "eval.csv" or not os.path.isfile(path):
        continue
      rows += [dict(variant=variant, game=game, seed=seed, frames=frames, name=name)
               for frames, name in read_events(path)]
  return pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
