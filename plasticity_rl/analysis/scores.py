"""Per-run scores, human normalization, rliable score matrices and the gaps.

An *evaluation point* is one `frames` value of a run; its return is the mean
over that point's episodes. A run's final score is the mean over its last W
points. rliable needs a rectangular [runs, games] matrix per variant, so when a
variant's games have different seed counts, each game keeps k = the smallest
count: the seeds common to all its games first (in seed order), then its lowest
other seeds. Seeds are shared ids in practice, so this keeps the common seeds
and drops the rest; every dropped run is listed in the gaps. Rows are not paired
across games (the stratified bootstrap resamples runs within each game), so
filling with other seed ids when ids differ is sound.
"""

from typing import Iterable, NamedTuple, Sequence

import numpy as np
import pandas as pd

from plasticity_rl import atari_games
from plasticity_rl.analysis.load import RUN_KEY, AnalysisError, canonical_games


class Matrices(NamedTuple):
  scores: dict[str, np.ndarray]  # variant -> [runs, games] HNS.
  games: dict[str, list[str]]  # variant -> the games (columns), sorted.
  seeds: dict[str, dict[str, list[int]]]  # variant -> game -> seeds (rows) kept.


def curves(episodes: pd.DataFrame) -> pd.DataFrame:
  """Mean return per (variant, game, seed, frames), with its episode count."""
  grouped = episodes.groupby(RUN_KEY + ["frames"], sort=True)["return"]
  return grouped.agg(["mean", "size"]).rename(columns={"mean": "return", "size": "episodes"}).reset_index()


def final_scores(curve: pd.DataFrame, last_evals: int = 1) -> pd.DataFrame:
  """Mean of each run's last `last_evals` evaluation points (of `curves`).

  Columns: variant, game, seed, score, points (used), last_frames.
  """
  if last_evals < 1:
    raise AnalysisError(f"last_evals must be >= 1, got {last_evals}")
  tail = curve.sort_values("frames").groupby(RUN_KEY, sort=True).tail(last_evals)
  grouped = tail.groupby(RUN_KEY, sort=True)
  return pd.DataFrame({"score": grouped["return"].mean(), "points": grouped.size(),
                       "last_frames": grouped["frames"].max()}).reset_index()


def add_hns(df: pd.DataFrame, column: str = "score") -> pd.DataFrame:
  """Adds `hns`: human-normalized `column` ((x - random) / (human - random))."""
  table = atari_games.score_table()
  random = df["game"].map({g: t.random for g, t in table.items()})
  human = df["game"].map({g: t.human for g, t in table.items()})
  return df.assign(hns=(df[column] - random) / (human - random))


def expected_games(spec: str | None) -> tuple[str, ...] | None:
  """'atari57' / 'atari26' / 'atari5', or comma-separated game names; None: no set."""
  if not spec:
    return None
  if spec.lower() in atari_games.GAME_SETS:
    return atari_games.GAME_SETS[spec.lower()]
  names = pd.Series([name.strip() for name in spec.split(",") if name.strip()])
  return tuple(dict.fromkeys(canonical_games(names, "--games")))


def select_games(final: pd.DataFrame, games: Sequence[str] | None,
                 common: bool) -> tuple[pd.DataFrame, list[str]]:
  """Keeps the requested games (and, if `common`, those every variant has).

  Returns the kept rows and notes on what was left out.
  """
  notes = []
  if games is not None:
    outside = sorted(set(final["game"]) - set(games))
    if outside:
      notes.append(f"not in the requested game set, left out of the aggregates: {outside}")
    final = final[final["game"].isin(games)]
  if common and len(final):
    per_variant = final.groupby("variant")["game"].agg(set)
    shared = set.intersection(*per_variant)
    for variant, have in per_variant.items():
      if have - shared:
        notes.append(f"variant {variant}: games left out by --common_games (not run by every variant): "
                     f"{sorted(have - shared)}")
    final = final[final["game"].isin(shared)]
  return final, notes


def matrices(final: pd.DataFrame) -> tuple[Matrices, list[str]]:
  """HNS final scores (with `hns`) -> rectangular matrices, and notes on dropped runs."""
  scores, games_of, seeds_of, notes = {}, {}, {}, []
  for variant, rows in final.groupby("variant", sort=True):
    by_game = {game: sorted(g["seed"]) for game, g in rows.groupby("game", sort=True)}
    k = min(len(s) for s in by_game.values())
    common = sorted(set.intersection(*(set(s) for s in by_game.values())))
    kept, games_by_dropped = {}, {}
    for game, seeds in by_game.items():
      kept[game] = sorted(common + [s for s in seeds if s not in common][:k - len(common)])
      dropped = tuple(s for s in seeds if s not in kept[game])
      if dropped:
        games_by_dropped.setdefault(dropped, []).append(game)
    for dropped, games in games_by_dropped.items():
      notes.append(f"variant {variant}: seed(s) {list(dropped)} left out of the aggregates on {len(games)} "
                   f"game(s) {games}: rliable needs the same number of runs ({k}) on every game")
    hns = rows.set_index(["game", "seed"])["hns"]
    games = list(by_game)
    scores[variant] = np.array([[hns[(game, kept[game][i])] for game in games] for i in range(k)])
    games_of[variant], seeds_of[variant] = games, kept
  return Matrices(scores, games_of, seeds_of), notes


def curve_tensor(curve: pd.DataFrame, variant: str, kept: dict[str, list[int]]
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """[runs, games, frames] HNS of `variant`'s kept runs at their common frames.

  Returns (tensor, frames, notes); frames is empty when the runs share none.
  """
  rows = add_hns(curve[curve["variant"] == variant], "return")
  games = list(kept)
  runs = {key: run.set_index("frames")["hns"] for key, run in rows.groupby(["game", "seed"])}
  per_run = {(g, s): runs[(g, s)] for g in games for s in kept[g]}
  all_frames = sorted(set().union(*(set(r.index) for r in per_run.values())))
  frames = sorted(set.intersection(*(set(r.index) for r in per_run.values())))
  notes = []
  if len(frames) < len(all_frames):
    notes.append(f"variant {variant}: sample-efficiency curve uses the {len(frames)} of {len(all_frames)} "
                 "frame values that all its runs evaluated at")
  k = len(kept[games[0]])
  tensor = np.array([[per_run[(g, kept[g][i])].loc[frames].to_numpy() for g in games] for i in range(k)])
  return tensor.reshape(k, len(games), len(frames)), np.array(frames, dtype=np.int64), notes


def gaps(final: pd.DataFrame, empty_runs: Iterable[str], games: Sequence[str] | None,
         last_evals: int) -> list[str]:
  """Missing games and seeds, empty runs, runs that end early or are short, as lines.

  Expected games: `games` when given, else the union over variants; expected
  seeds: the union over all variants and games.
  """
  lines = [f"run with no evaluation rows: {run}" for run in empty_runs]
  expected = list(games) if games is not None else sorted(set(final["game"]))
  all_seeds = set(final["seed"])
  for variant, rows in final.groupby("variant", sort=True):
    by_game = rows.groupby("game")["seed"].agg(set)
    missing_games = [g for g in expected if g not in by_game.index]
    if missing_games:
      lines.append(f"variant {variant}: {len(missing_games)} game(s) missing: {missing_games}")
    games_by_missing = {}
    for game, seeds in by_game.items():
      if all_seeds - seeds:
        games_by_missing.setdefault(tuple(sorted(all_seeds - seeds)), []).append(game)
    for missing, games_missing in games_by_missing.items():
      lines.append(f"variant {variant}: seed(s) {list(missing)} missing on {len(games_missing)} game(s): "
                   f"{games_missing}")
  end = final["last_frames"].max()
  for variant, rows in final[final["last_frames"] < end].groupby("variant", sort=True):
    runs = "; ".join(f"{r.game} seed {r.seed} at {r.last_frames:,}" for r in rows.itertuples())
    lines.append(f"variant {variant}: {len(rows)} run(s) end before {end:,} frames, so their final score "
                 f"is taken earlier: {runs}")
  short = final[final["points"] < last_evals]
  for row in short.itertuples():
    lines.append(f"variant {row.variant}, game {row.game}, seed {row.seed}: only {row.points} evaluation "
                 f"point(s) (last_evals={last_evals}); final score is their mean")
  return lines
