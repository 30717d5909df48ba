"""Per-game learning curves over seeds (mean and bootstrap CI), and the runs' intervention events.

`per_game_curves`: for each variant, game and evaluation frame, the mean over seeds of
the evaluation return (raw score; scores.curves' per-run points) with a 95 % percentile
CI from resampling the seeds that evaluated at that frame (stats.resample_means); NaN
with one seed, flagged `few_runs` with fewer than stats.MIN_RUNS.

`events`: the event rows (injection, reset, …) of each run's metrics.jsonl, found beside
the eval.csv it was read from (a tidy CSV from elsewhere has none).
"""

import os

import numpy as np
import pandas as pd

from plasticity_rl import recorder
from plasticity_rl.analysis import stats
from plasticity_rl.analysis.load import RUN_KEY, AnalysisError
from plasticity_rl.workdir import WorkdirError

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


def events(episodes: pd.DataFrame) -> pd.DataFrame:
  """The event rows of the runs' metrics.jsonl (beside each run's eval.csv): EVENT_COLUMNS."""
  rows = []
  for (variant, game, seed), sources in episodes.groupby(RUN_KEY, sort=True)["source"]:
    for source in sources.unique():
      workdir = os.path.dirname(str(source))
      if os.path.basename(str(source)) != "eval.csv" or not os.path.isfile(os.path.join(workdir, "metrics.jsonl")):
        continue
      try:
        logged = recorder.read_metrics(workdir, "event")
      except WorkdirError as e:
        raise AnalysisError(str(e)) from None
      rows += [dict(variant=variant, game=game, seed=seed, frames=int(r["frames"]), name=str(r.get("name", "event")))
               for r in logged]
  return pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
