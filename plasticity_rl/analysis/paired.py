"""Per-game benefit of a paired variant: X − Y per game over the seeds both ran, with bootstrap CIs.

For a treated variant X and its control Y run with the same seeds (inject vs baseline,
the diagnosis's `…+inject` vs `…+continue`), each game gets

- Δ = mean over seeds of X's final raw score − mean of Y's (the seeds both ran);
- relative improvement = Δ / |Y − random| × 100 %: the gain as a share of the control's
  distance from the random policy's score (so games of any score scale compare);
- Δ HNS = Δ / (human − random);
- 95 % percentile CIs of Δ and of the relative improvement from a paired bootstrap: the
  seeds are resampled with replacement, X's and Y's score of a drawn seed together.

Rows are sorted by relative improvement, largest first. A game with one common seed
has no CI (NaN); one with fewer than stats.MIN_RUNS is flagged (`few_runs`). Each game's
`verdict` (`verdict`): "better" or "worse" only where the CI of Δ excludes 0 and the game
has at least stats.MIN_RUNS paired seeds, else "inconclusive" — for the diagnosis at scale
(inject vs continue from each game's own saved agents), "better" is the game that had lost
plasticity.
"""

from typing import Sequence

import numpy as np
import pandas as pd

from plasticity_rl import atari_games
from plasticity_rl.analysis import stats
from plasticity_rl.analysis.load import AnalysisError

COLUMNS = ("x", "y", "game", "seeds", "x_score", "y_score", "random", "delta", "delta_lo", "delta_hi",
           "delta_hns", "relative", "relative_lo", "relative_hi", "few_runs", "verdict")


def parse_pairs(specs: Sequence[str], variants: Sequence[str]) -> list[tuple[str, str]]:
  """['X:Y', …] (treated:control) -> [(X, Y), …]; a malformed spec or unknown variant is an AnalysisError."""
  pairs = []
  for spec in specs:
    parts = spec.split(":")
    if len(parts) != 2 or not all(p.strip() for p in parts):
      raise AnalysisError(f"--paired: {spec!r} is not TREATED:CONTROL (e.g. inject@50M:baseline)")
    x, y = (p.strip() for p in parts)
    unknown = [v for v in (x, y) if v not in variants]
    if unknown:
      raise AnalysisError(f"--paired {spec}: unknown variant(s) {unknown}; the data has {list(variants)}")
    if x == y:
      raise AnalysisError(f"--paired {spec}: a variant paired with itself")
    if (x, y) not in pairs:
      pairs.append((x, y))
  return pairs


def verdict(delta_lo: float, delta_hi: float, seeds: int) -> str:
  """"better" / "worse" where the CI of Δ excludes 0 over ≥ stats.MIN_RUNS paired seeds, else "inconclusive"."""
  if stats.few(seeds) or not np.isfinite(delta_lo) or not np.isfinite(delta_hi):
    return "inconclusive"
  return "better" if delta_lo > 0 else "worse" if delta_hi < 0 else "inconclusive"


def per_game(final: pd.DataFrame, x: str, y: str, reps: int, seed: int) -> tuple[pd.DataFrame, list[str]]:
  """final scores (scores.final_scores rows) -> (one row per game, COLUMNS, sorted; notes on runs left out)."""
  table = atari_games.score_table()
  scores = {v: final[final["variant"] == v] for v in (x, y)}
  rows, notes = [], []
  for game in sorted(set(scores[x]["game"]) | set(scores[y]["game"])):
    by_seed = {v: s[s["game"] == game].set_index("seed")["score"] for v, s in scores.items()}
    seeds = sorted(set(by_seed[x].index) & set(by_seed[y].index))
    unpaired = sorted(set(by_seed[x].index) ^ set(by_seed[y].index))
    if unpaired:
      notes.append(f"paired {x} vs {y}, {game}: seed(s) {unpaired} run by only one of them, left out "
                   "(a pair needs the same seed in both)")
    if not seeds:
      notes.append(f"paired {x} vs {y}, {game}: no seed run by both; no row")
      continue
    pair = np.stack([by_seed[x].loc[seeds].to_numpy(float), by_seed[y].loc[seeds].to_numpy(float)], axis=1)
    random, human = table[game].random, table[game].human
    x_score, y_score = pair.mean(axis=0)
    delta = x_score - y_score
    base = abs(y_score - random)
    relative = 100.0 * delta / base if base > 0 else np.nan
    lo = hi = rel_lo = rel_hi = np.nan
    if len(seeds) > 1:
      means = stats.resample_means(pair, reps, seed)
      boot_delta = means[:, 0] - means[:, 1]
      with np.errstate(divide="ignore", invalid="ignore"):
        boot_relative = 100.0 * boot_delta / np.abs(means[:, 1] - random)
      lo, hi = stats.percentile_ci(boot_delta)
      rel_lo, rel_hi = stats.percentile_ci(boot_relative)
    rows.append(dict(x=x, y=y, game=game, seeds=len(seeds), x_score=x_score, y_score=y_score, random=random,
                     delta=delta, delta_lo=lo, delta_hi=hi, delta_hns=delta / (human - random),
                     relative=relative, relative_lo=rel_lo, relative_hi=rel_hi, few_runs=stats.few(len(seeds)),
                     verdict=verdict(lo, hi, len(seeds))))
  out = pd.DataFrame(rows, columns=list(COLUMNS))
  if len(out):
    out = out.sort_values(["relative", "delta"], ascending=False, na_position="last", kind="stable")
  return out.reset_index(drop=True), notes


def paired_tables(final: pd.DataFrame, pairs: Sequence[tuple[str, str]], reps: int,
                  seed: int) -> tuple[pd.DataFrame, list[str]]:
  """per_game for every pair, concatenated (pairs in order)."""
  frames, notes = [], []
  for x, y in pairs:
    frame, pair_notes = per_game(final, x, y, reps, seed)
    frames.append(frame)
    notes += pair_notes
  if not frames:
    return pd.DataFrame(columns=list(COLUMNS)), notes
  return pd.concat(frames, ignore_index=True), notes
