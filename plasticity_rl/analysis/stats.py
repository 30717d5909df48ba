"""The small statistics the tables, figures and the diagnosis share: a bootstrap of means, and the <3-runs flag.

A CI from fewer than MIN_RUNS runs (seeds) per game is no real interval: with one run
rliable's stratified bootstrap gives a zero-width "95 % CI", with two it resamples two
values. Every table and figure marks such a CI with FEW_RUNS_MARK and FEW_RUNS_NOTE
instead of showing it as if it were one.
"""

import warnings

import numpy as np

from plasticity_rl.analysis.load import AnalysisError

MIN_RUNS = 3
FEW_RUNS_MARK = "†"
FEW_RUNS_NOTE = (f"{FEW_RUNS_MARK} CI from fewer than {MIN_RUNS} runs per game: not a real interval "
                 "(a bootstrap over 1 or 2 runs); run more seeds before reading it.")


def few(runs: int) -> bool:
  """True when `runs` runs (per game) are too few for a CI."""
  return int(runs) < MIN_RUNS


def size_label(games: int, runs: int) -> str:
  """'4 games × 2 runs†': what an aggregate was computed from, flagged when its CI is not real."""
  return (f"{games} game{'s' if games != 1 else ''} × {runs} run{'s' if runs != 1 else ''}"
          f"{FEW_RUNS_MARK if few(runs) else ''}")


def resample_means(values: np.ndarray, reps: int, seed: int) -> np.ndarray:
  """[n, ...] -> [reps, ...]: means over n rows drawn with replacement (NaN rows ignored), `reps` times.

  Rows are the units resampled (seeds, or evaluations); the draws come from their own
  NumPy Generator seeded with `seed`, so the global RNG is untouched.
  """
  values = np.asarray(values, dtype=np.float64)
  if values.shape[0] == 0:
    raise AnalysisError("a bootstrap needs at least one value")
  if reps < 1:
    raise AnalysisError(f"bootstrap repetitions must be >= 1, got {reps}")
  index = np.random.default_rng(seed).integers(0, values.shape[0], size=(reps, values.shape[0]))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # A draw of only NaN rows: its mean is NaN.
    return np.nanmean(values[index], axis=1)


def percentile_ci(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """95 % percentile interval over axis 0 of bootstrap samples (NaN and inf samples ignored)."""
  samples = np.where(np.isfinite(samples), samples, np.nan)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    lo, hi = np.nanpercentile(samples, [2.5, 97.5], axis=0)
  return lo, hi
