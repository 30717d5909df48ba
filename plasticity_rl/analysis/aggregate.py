"""Aggregate metrics with rliable, and the CLI that writes tables and plots.

  plasticity-rl-aggregate --runs=ROOT_OR_RUNS[,…] --out=DIR \\
      [--csv=results.csv] [--games=atari57] [--last_evals=1] [--reps=50000] \\
      [--seed=0] [--compare=baseline,inject] [--paired=inject:baseline]

IQM, median, mean and optimality gap of human-normalized final scores with 95 %
stratified-bootstrap CIs, probability of improvement, sample-efficiency curves
(IQM vs frames) and performance profiles: every number comes from
`rliable.library` / `rliable.metrics` on the [runs, games] matrices of
scores.py. rliable 1.2 draws its bootstrap indices from NumPy's *global* RNG
(its `random_state` argument does not reach them), so each estimate seeds that
RNG with `seed`, per variant (or pair), and restores its state afterwards:
`np.random.seed(seed); rliable.library.get_interval_estimates({v: m}, ...)`
gives the same numbers.

Every table and figure states its games and runs per variant, and marks a CI from
fewer than 3 runs per game (stats.py). --paired=X:Y adds the per-game benefit of X
over Y on the seeds both ran (paired.py: Δ and relative improvement with paired
bootstrap CIs, sorted, and its figure) and P(X > Y). Besides Markdown / LaTeX, every
table and curve is written as CSV and JSON, every figure as PNG and PDF, with a
per-game learning-curve grid (curves.py), and the compute each variant spent beside
its IQM (compute.py: training FLOPs, their ratio to the reference — --compare's
first, else baseline —, parameters, wall-clock; compute.md/.csv/.json, compute.png). docs/analysis.md lists the files.
"""

import contextlib
import os
import sys
from typing import Callable, NamedTuple, Sequence

from absl import flags
import numpy as np
import pandas as pd
from rliable import library
from rliable import metrics
import scipy.stats

from plasticity_rl import atari_games
from plasticity_rl import cli
from plasticity_rl.analysis import compute as compute_lib
from plasticity_rl.analysis import curves as curves_lib
from plasticity_rl.analysis import load
from plasticity_rl.analysis import paired as paired_lib
from plasticity_rl.analysis import plots
from plasticity_rl.analysis import scores as scores_lib
from plasticity_rl.analysis import stats
from plasticity_rl.analysis import tables
from plasticity_rl.analysis.load import AnalysisError

METRICS: dict[str, Callable[[np.ndarray], float]] = {
    "IQM": metrics.aggregate_iqm,
    "Median": metrics.aggregate_median,
    "Mean": metrics.aggregate_mean,
    "Optimality gap": metrics.aggregate_optimality_gap,
}


def aggregate_metrics(scores: np.ndarray) -> np.ndarray:
  """[runs, games] -> the METRICS, in order (rliable's `func` argument)."""
  return np.array([fn(scores) for fn in METRICS.values()])


def iqm_per_frame(scores: np.ndarray) -> np.ndarray:
  """[runs, games, frames] -> IQM at each frame: rliable's aggregate_iqm, vectorized."""
  return scipy.stats.trim_mean(scores.reshape(-1, scores.shape[-1]), proportiontocut=0.25, axis=0)


@contextlib.contextmanager
def seeded(seed: int):
  """Seeds NumPy's global RNG (which rliable's bootstrap uses), then restores it."""
  state = np.random.get_state()
  np.random.seed(seed)
  try:
    yield
  finally:
    np.random.set_state(state)


def interval_estimates(score_dict: dict[str, np.ndarray | list[np.ndarray]], func: Callable[..., np.ndarray],
                       reps: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """rliable's get_interval_estimates (95 % percentile CIs), seeded per key."""
  points, intervals = {}, {}
  for key, value in score_dict.items():
    with seeded(seed):
      point, interval = library.get_interval_estimates({key: value}, func, reps=reps)
    points[key], intervals[key] = point[key], interval[key]
  return points, intervals


def aggregate_table(matrices: scores_lib.Matrices, reps: int, seed: int) -> pd.DataFrame:
  """One row per variant: games, runs (per game), and each metric's point, lo, hi."""
  points, intervals = interval_estimates(matrices.scores, aggregate_metrics, reps, seed)
  rows = []
  for variant, matrix in matrices.scores.items():
    row = {"variant": variant, "games": matrix.shape[1], "runs": matrix.shape[0]}
    for i, name in enumerate(METRICS):
      row[name] = points[variant][i]
      row[f"{name} lo"], row[f"{name} hi"] = intervals[variant][:, i]
    row["few_runs"] = stats.few(matrix.shape[0])
    rows.append(row)
  return pd.DataFrame(rows)


def comparisons(variants: Sequence[str], compare: Sequence[str] | None) -> list[tuple[str, str]]:
  """Pairs (x, y) for P(x > y): each variant over the reference (`compare[0]`).

  Without `compare`: the reference is "baseline" if present, else the first variant.
  """
  if compare:
    unknown = [v for v in compare if v not in variants]
    if unknown:
      raise AnalysisError(f"--compare: unknown variant(s) {unknown}; the data has {list(variants)}")
    if len(compare) < 2:
      raise AnalysisError(f"--compare needs at least two variants (reference first), got {list(compare)}")
  reference = reference_variant(variants, compare)
  others = list(compare[1:]) if compare else [v for v in variants if v != reference]
  return [(x, reference) for x in others]


def reference_variant(variants: Sequence[str], compare: Sequence[str] | None) -> str:
  """The variant the others are compared with: compare[0], else "baseline" when present, else the first."""
  if compare:
    return compare[0]
  return "baseline" if "baseline" in variants else variants[0]


def improvement_table(matrices: scores_lib.Matrices, pairs: Sequence[tuple[str, str]],
                      reps: int, seed: int) -> tuple[pd.DataFrame, list[str]]:
  """P(x > y) with CIs on the games both ran (rliable), and notes on games left out."""
  rows, notes = [], []
  for x, y in pairs:
    shared = [g for g in matrices.games[x] if g in matrices.games[y]]
    left_out = sorted(set(matrices.games[x]) ^ set(matrices.games[y]))
    if left_out:
      notes.append(f"P({x} > {y}): uses the {len(shared)} games both ran; left out: {left_out}")
    if not shared:
      continue
    cols_x = [matrices.games[x].index(g) for g in shared]
    cols_y = [matrices.games[y].index(g) for g in shared]
    pair = [matrices.scores[x][:, cols_x], matrices.scores[y][:, cols_y]]
    points, intervals = interval_estimates({f"{x},{y}": pair}, metrics.probability_of_improvement, reps, seed)
    lo, hi = np.ravel(intervals[f"{x},{y}"])
    rows.append({"x": x, "y": y, "P(x > y)": float(points[f"{x},{y}"]), "lo": lo, "hi": hi,
                 "games": len(shared), "runs x": pair[0].shape[0], "runs y": pair[1].shape[0],
                 "few_runs": stats.few(min(pair[0].shape[0], pair[1].shape[0]))})
  return pd.DataFrame(rows), notes


class Curve(NamedTuple):
  frames: np.ndarray
  iqm: np.ndarray
  lo: np.ndarray
  hi: np.ndarray


def sample_efficiency(curve: pd.DataFrame, matrices: scores_lib.Matrices, reps: int,
                      seed: int) -> tuple[dict[str, Curve], list[str]]:
  """IQM of HNS vs frames with CIs, per variant, at the frames all its kept runs share."""
  out, notes = {}, []
  for variant, kept in matrices.seeds.items():
    tensor, frames, tensor_notes = scores_lib.curve_tensor(curve, variant, kept)
    notes += tensor_notes
    if not len(frames):
      notes.append(f"variant {variant}: no frame value common to all its runs; no sample-efficiency curve")
      continue
    points, intervals = interval_estimates({variant: tensor}, iqm_per_frame, reps, seed)
    out[variant] = Curve(frames, points[variant], *intervals[variant])
  return out, notes


def profile_taus(matrices: scores_lib.Matrices, num: int = 101) -> np.ndarray:
  """Thresholds from 0 to about the 95th percentile of all scores (1 to 8 HNS)."""
  everything = np.concatenate([m.ravel() for m in matrices.scores.values()])
  return np.linspace(0.0, float(np.clip(1.1 * np.percentile(everything, 95), 1.0, 8.0)), num)


def performance_profiles(matrices: scores_lib.Matrices, taus: np.ndarray, reps: int, seed: int
                         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """rliable score distributions (fraction of runs with HNS > tau) with CIs, per variant."""
  profiles, cis = {}, {}
  for variant, matrix in matrices.scores.items():
    with seeded(seed):
      profile, ci = library.create_performance_profile({variant: matrix}, taus, reps=reps)
    profiles[variant], cis[variant] = profile[variant], ci[variant]
  return profiles, cis


def curves_frame(curves: dict[str, Curve], sizes: plots.Sizes) -> pd.DataFrame:
  """The sample-efficiency curves as rows: variant, frames, IQM, lo, hi, games, runs, few_runs."""
  rows = [dict(variant=v, frames=int(f), iqm=p, lo=lo, hi=hi, games=sizes[v][0], runs=sizes[v][1],
               few_runs=stats.few(sizes[v][1]))
          for v, c in curves.items() for f, p, lo, hi in zip(c.frames, c.iqm, c.lo, c.hi)]
  return pd.DataFrame(rows, columns=["variant", "frames", "iqm", "lo", "hi", "games", "runs", "few_runs"])


def profiles_frame(taus: np.ndarray, profiles: dict[str, np.ndarray], cis: dict[str, np.ndarray],
                   sizes: plots.Sizes) -> pd.DataFrame:
  """The performance profiles as rows: variant, tau, fraction (of runs with HNS > tau), lo, hi, games, runs."""
  rows = [dict(variant=v, tau=t, fraction=p, lo=lo, hi=hi, games=sizes[v][0], runs=sizes[v][1])
          for v, profile in profiles.items() for t, p, lo, hi in zip(taus, profile, cis[v][0], cis[v][1])]
  return pd.DataFrame(rows, columns=["variant", "tau", "fraction", "lo", "hi", "games", "runs"])


def per_game_frame(final: pd.DataFrame) -> pd.DataFrame:
  """Per game and variant: seeds, mean raw score and HNS over seeds, with the game's random and human scores."""
  table = atari_games.score_table()
  out = final.groupby(["game", "variant"], sort=True).agg(seeds=("seed", "size"), score=("score", "mean"),
                                                          hns=("hns", "mean")).reset_index()
  return out.assign(random=out["game"].map(lambda g: table[g].random),
                    human=out["game"].map(lambda g: table[g].human), few_runs=out["seeds"].map(stats.few))


class Analysis(NamedTuple):
  final: pd.DataFrame  # One row per run: variant, game, seed, score, hns, points, last_frames.
  matrices: scores_lib.Matrices
  aggregate: pd.DataFrame
  improvement: pd.DataFrame
  curves: dict[str, Curve]
  taus: np.ndarray
  profiles: dict[str, np.ndarray]
  profile_cis: dict[str, np.ndarray]
  gaps: list[str]
  paired: pd.DataFrame  # paired.COLUMNS: one row per pair and game (empty without --paired).
  grid: pd.DataFrame  # curves.COLUMNS: mean and CI over seeds per variant, game and frames.
  events: pd.DataFrame  # curves.EVENT_COLUMNS: the runs' intervention events.
  compute: pd.DataFrame  # compute.COLUMNS: per variant, training FLOPs, params and wall-clock beside the IQM.
  reference: str  # The variant compute.relative_flops is taken to.


def sizes(matrices: scores_lib.Matrices) -> dict[str, tuple[int, int]]:
  """variant -> (games, runs per game) of its aggregate matrix."""
  return {v: (m.shape[1], m.shape[0]) for v, m in matrices.scores.items()}


def analyze(results: load.Results, games: Sequence[str] | None = None, last_evals: int = 1,
            reps: int = 50_000, seed: int = 0, compare: Sequence[str] | None = None,
            common_games: bool = False, poi_reps: int = 2_000, curve_reps: int = 5_000,
            profile_reps: int = 2_000, paired: Sequence[str] | None = None) -> Analysis:
  """Everything the CLI writes, from loaded results; `paired`: 'X:Y' specs (treated:control)."""
  curve = scores_lib.curves(results.episodes)
  final = scores_lib.add_hns(scores_lib.final_scores(curve, last_evals))
  gaps = scores_lib.gaps(final, results.empty_runs, games, last_evals)
  selected, notes = scores_lib.select_games(final, games, common_games)
  if selected.empty:
    raise AnalysisError(f"no run left to aggregate ({'; '.join(notes)})")
  matrices, drop_notes = scores_lib.matrices(selected)
  gaps += notes + drop_notes
  variants = list(matrices.scores)
  paired_pairs = paired_lib.parse_pairs(paired or [], variants)
  pairs = comparisons(variants, compare) if len(variants) > 1 or compare else []
  pairs += [p for p in paired_pairs if p not in pairs]
  aggregate = aggregate_table(matrices, reps, seed)
  improvement, poi_notes = improvement_table(matrices, pairs, poi_reps, seed)
  paired_table, paired_notes = paired_lib.paired_tables(selected, paired_pairs, reps, seed)
  curves, curve_notes = sample_efficiency(curve, matrices, curve_reps, seed)
  taus = profile_taus(matrices)
  profiles, profile_cis = performance_profiles(matrices, taus, profile_reps, seed)
  shown = curve[curve["game"].isin(selected["game"].unique())]
  grid = curves_lib.per_game_curves(shown, curve_reps, seed)
  events = curves_lib.events(results.episodes[results.episodes["game"].isin(selected["game"].unique())])
  used = results.episodes.merge(selected[load.RUN_KEY].drop_duplicates(), on=load.RUN_KEY)
  run_costs, compute_notes = compute_lib.run_summaries(used)
  reference = reference_variant(variants, compare)
  compute = compute_lib.compute_table(run_costs, aggregate, reference)
  return Analysis(final, matrices, aggregate, improvement, curves, taus, profiles, profile_cis,
                  gaps + poi_notes + paired_notes + curve_notes + compute_notes, paired_table, grid, events,
                  compute, reference)


def same_games(matrices: scores_lib.Matrices) -> bool:
  return len({tuple(games) for games in matrices.games.values()}) == 1


def _slug(text: str) -> str:
  return "".join(c if c.isalnum() or c in "@+.-" else "_" for c in text)


def paired_figure_name(x: str, y: str) -> str:
  return f"paired_{_slug(x)}_vs_{_slug(y)}.png"


def write_outputs(analysis: Analysis, out: str) -> list[str]:
  """Writes the tables (Markdown, LaTeX, CSV, JSON), gaps.txt and the figures (PNG, PDF) into `out`;
  returns the paths."""
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, load.OUTPUTS_MARKER), "w") as f:  # Its CSVs are results, not inputs (load.py).
    f.write("plasticity-rl-aggregate's outputs: a --runs glob that reaches this directory skips its CSV files\n")
  texts = {
      "aggregate.md": tables.aggregate_markdown(analysis.aggregate, same_games(analysis.matrices)),
      "aggregate.tex": tables.aggregate_latex(analysis.aggregate),
      "per_game.md": tables.per_game_markdown(analysis.final),
      "per_game.tex": tables.per_game_latex(analysis.final),
      "compute.md": tables.compute_markdown(analysis.compute, analysis.reference),
      "gaps.txt": tables.gaps_text(analysis.gaps),
  }
  if len(analysis.improvement):
    texts["probability_of_improvement.md"] = tables.improvement_markdown(analysis.improvement)
  if len(analysis.paired):
    texts["paired.md"] = tables.paired_markdown(analysis.paired, analysis.improvement)
  paths = []
  for name, text in texts.items():
    paths.append(os.path.join(out, name))
    with open(paths[-1], "w") as f:
      f.write(text)
  size = sizes(analysis.matrices)
  data = {"aggregate": analysis.aggregate, "per_game": per_game_frame(analysis.final),
          "final_scores": analysis.final, "sample_efficiency": curves_frame(analysis.curves, size),
          "performance_profile": profiles_frame(analysis.taus, analysis.profiles, analysis.profile_cis, size),
          "learning_curves": analysis.grid, "events": analysis.events, "compute": analysis.compute}
  if len(analysis.improvement):
    data["probability_of_improvement"] = analysis.improvement
  if len(analysis.paired):
    data["paired"] = analysis.paired
  for name, df in data.items():
    paths += tables.write_data(df, os.path.join(out, name))
  figures = [plots.interval_plot(analysis.aggregate, os.path.join(out, "aggregate_intervals.png"))]
  if analysis.curves:
    figures.append(plots.sample_efficiency_plot(analysis.curves, os.path.join(out, "sample_efficiency.png"), size))
  figures.append(plots.profile_plot(analysis.taus, analysis.profiles, analysis.profile_cis,
                                    os.path.join(out, "performance_profile.png"), size))
  figures.append(plots.learning_curve_grid(analysis.grid, analysis.events, os.path.join(out, "learning_curves.png")))
  figures.append(plots.compute_plot(analysis.compute, os.path.join(out, "compute.png")))
  for (x, y), rows in analysis.paired.groupby(["x", "y"], sort=False):
    figures.append(plots.paired_plot(rows, os.path.join(out, paired_figure_name(x, y)),
                                     tables.poi_line(analysis.improvement, x, y)))
  return paths + [p for figure in figures for p in plots.figure_paths(figure)]


FLAGS = flags.FLAGS
cli.flag(flags.DEFINE_list, "runs", [], "Run workdirs (a config.json or eval.csv), sweep roots (their sweep.json lists the "
                  "runs), directories above them, or glob patterns of them, comma-separated; quote globs. "
                  "Matches that are no run (tb/ files, logs/, checkpoints/) are skipped and counted.")
cli.flag(flags.DEFINE_list, "csv", [], "Tidy CSVs (game, variant|agent, seed, frames, return|episode_return) or globs.")
cli.flag(flags.DEFINE_string, "out", None, "Output directory for tables, gaps.txt and plots.")
cli.flag(flags.DEFINE_string, "games", None, "Expected games: atari57, atari26, atari5 or a comma-separated list; "
                    "missing ones are reported and others left out. Default: the games in the data.")
cli.flag(flags.DEFINE_integer, "last_evals", 1, "Final score = mean over each run's last this many evaluation points.")
cli.flag(flags.DEFINE_integer, "reps", 50_000, "Bootstrap repetitions for the aggregate metrics.")
cli.flag(flags.DEFINE_integer, "poi_reps", 2_000, "Bootstrap repetitions for probability of improvement.")
cli.flag(flags.DEFINE_integer, "curve_reps", 5_000, "Bootstrap repetitions for the sample-efficiency curves.")
cli.flag(flags.DEFINE_integer, "profile_reps", 2_000, "Bootstrap repetitions for the performance profiles.")
cli.flag(flags.DEFINE_integer, "seed", 0, "Seed of the bootstrap (NumPy's global RNG, as rliable uses it).")
cli.flag(flags.DEFINE_list, "compare", None, "Variants for probability of improvement, reference first: "
                  "P(other > reference). Default: every variant vs 'baseline' (or the first).")
cli.flag(flags.DEFINE_bool, "common_games", False, "Aggregate only the games every variant has.")
cli.flag(flags.DEFINE_list, "paired", None, "TREATED:CONTROL pairs of variants run with the same seeds, "
                  "comma-separated (e.g. inject@50M:baseline): per-game Δ and relative improvement with paired "
                  "bootstrap CIs over seeds (paired.md/.csv/.json, paired_X_vs_Y.png/.pdf) and P(TREATED > CONTROL).")


def main(argv: Sequence[str]) -> None:
  # Extra arguments are paths a shell expanded from an unquoted --runs glob.
  runs = list(FLAGS.runs) + list(argv[1:])
  try:
    if not runs and not FLAGS.csv:
      raise AnalysisError("give at least one of --runs or --csv")
    if not FLAGS.out:
      raise AnalysisError("--out is required")
    games = scores_lib.expected_games(FLAGS.games)
    results = load.load_results(runs, FLAGS.csv)
    if results.skipped:
      print(load.skipped_line(results.skipped), file=sys.stderr)
    analysis = analyze(results, games, FLAGS.last_evals, FLAGS.reps, FLAGS.seed, FLAGS.compare,
                       FLAGS.common_games, FLAGS.poi_reps, FLAGS.curve_reps, FLAGS.profile_reps, FLAGS.paired)
    paths = write_outputs(analysis, FLAGS.out)
  except AnalysisError as e:
    cli.fail(e)
  print(tables.aggregate_markdown(analysis.aggregate, same_games(analysis.matrices)))
  if len(analysis.improvement):
    print(tables.improvement_markdown(analysis.improvement))
  if len(analysis.paired):
    print(tables.paired_markdown(analysis.paired, analysis.improvement))
  print(tables.compute_markdown(analysis.compute, analysis.reference))
  print(tables.gaps_text(analysis.gaps))
  print("wrote:\n" + "\n".join(f"  {p}" for p in paths))


def run():
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
