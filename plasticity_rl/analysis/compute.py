"""What each variant's score cost: training FLOPs, parameters and wall-clock beside its IQM.

The injection paper's growth claim is "the same IQM as a large network from the start, for less compute"; this
is the table that reads it. Per run, from the summary.json beside its eval.csv (train.py writes it when a run
finishes): `train_flops` (XLA's count of every update's FLOPs at the structure it ran with, compute_cost.py),
`updates`, `params_trainable` / `params_total` at the end, `wall_seconds` and `num_seeds` (the seeds that
shared the process, and so its wall-clock). Per variant (`compute_table`): its runs with accounting, the mean
training FLOPs over them and their ratio to the reference variant's, FLOPs per update, the parameters at the
end, wall-clock per run, and the aggregate table's IQM with its CI. A run with no summary.json (not finished) or
one without `train_flops` (written before 2026-12-02) has no accounting: it is left out of the compute columns
and named in the notes, never counted as zero.
"""

import json
import os
import numpy as np
import pandas as pd

from plasticity_rl.analysis import load

COLUMNS = ("variant", "runs", "games", "accounted", "train_flops", "train_flops_min", "train_flops_max", "relative_flops",
           "flops_per_update", "params_total", "params_trainable", "wall_seconds_per_run", "IQM", "IQM lo",
           "IQM hi", "few_runs")
RUN_COLUMNS = ("variant", "game", "seed", "train_flops", "updates", "params_total", "params_trainable",
               "wall_seconds_per_run")


def run_summaries(episodes: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
  """One row per run (RUN_COLUMNS) from the summary.json beside each run's eval.csv; notes for runs without."""
  rows, notes = [], []
  runs = episodes.groupby(load.RUN_KEY, sort=True)["source"].first()
  for (variant, game, seed), source in runs.items():
    if os.path.basename(source) != "eval.csv":
      continue  # A tidy CSV carries scores only.
    path = os.path.join(os.path.dirname(source), "summary.json")
    try:
      with open(path) as f:
        summary = json.load(f)
    except (OSError, ValueError):
      notes.append(f"compute: variant={variant} game={game} seed={seed} has no summary.json (not finished): "
                   "left out of the compute columns")
      continue
    if not isinstance(summary.get("train_flops"), (int, float)):
      notes.append(f"compute: variant={variant} game={game} seed={seed}: its summary.json has no train_flops "
                   "(written before the accounting): left out of the compute columns")
      continue
    rows.append({"variant": variant, "game": game, "seed": seed, "train_flops": float(summary["train_flops"]),
                 "updates": int(summary["updates"]), "params_total": int(summary["params_total"]),
                 "params_trainable": int(summary["params_trainable"]),
                 "wall_seconds_per_run": float(summary["wall_seconds"]) / int(summary.get("num_seeds", 1))})
  return pd.DataFrame(rows, columns=list(RUN_COLUMNS)), notes


def compute_table(runs: pd.DataFrame, aggregate: pd.DataFrame, reference_variant: str) -> pd.DataFrame:
  """One row per variant of `aggregate` (COLUMNS): its compute means over its accounted runs, and its IQM.

  `runs`: run_summaries' rows (of the runs the aggregate used); relative_flops = the variant's mean training
  FLOPs / the reference's (NaN when either has no accounted run)."""
  means = runs.groupby("variant").agg(
      accounted=("seed", "size"), train_flops=("train_flops", "mean"), train_flops_min=("train_flops", "min"),
      train_flops_max=("train_flops", "max"), updates=("updates", "sum"),
      params_total=("params_total", "mean"), params_trainable=("params_trainable", "mean"),
      wall_seconds_per_run=("wall_seconds_per_run", "mean"))
  base = means["train_flops"].get(reference_variant, np.nan)
  rows = []
  for a in aggregate.to_dict("records"):
    accounted = a["variant"] in means.index
    m = means.loc[a["variant"]] if accounted else pd.Series(np.nan, index=means.columns)
    rows.append({"variant": a["variant"], "runs": a["runs"], "games": a["games"],
                 "accounted": int(m["accounted"]) if accounted else 0,
                 **{k: float(m[k]) for k in ("train_flops", "train_flops_min", "train_flops_max", "params_total",
                                             "params_trainable", "wall_seconds_per_run")},
                 "relative_flops": float(m["train_flops"]) / base,
                 "flops_per_update": (float(m["train_flops"]) * m["accounted"] / m["updates"] if accounted and m["updates"]
                                      else np.nan),
                 **{k: a[k] for k in ("IQM", "IQM lo", "IQM hi", "few_runs")}})
  return pd.DataFrame(rows, columns=list(COLUMNS))
