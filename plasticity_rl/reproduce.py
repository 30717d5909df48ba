r"""Reproduction: run a preset on games × seeds and compare the scores with the published runs of that setup.

  plasticity-rl-reproduce --preset=drq_eps --games=Boxing,Breakout,Seaquest --seeds=0 --root=runs/reproduce
  plasticity-rl-reproduce --preset=drq_eps --games=Boxing --seeds=0 --root=runs/reproduce --report_only
  plasticity-rl-reproduce --preset=dopamine_dqn --games=Pong,Breakout --root=runs/repro_dqn \
      --override=total_frames=10000000

The runs go through the sweep launcher (plasticity_rl/sweep/): ROOT/<game>/<preset>/seed_<n>, one process
per run, --parallel at a time; the same command again skips finished runs and resumes stopped ones from their
checkpoints. Then the report: per game our final score(s) (the mean return of the final evaluation, as the
published runs report), the published 10th / 50th / 90th percentiles over their runs, the random and human
scores, and a verdict — inside the published 10–90 % band or not — plus the IQM of human-normalised scores with
95 % stratified-bootstrap CIs for us and for the published runs on the same games. Printed, and written to
ROOT/reproduction.md and ROOT/reproduction.json.

--results DIR adds finished runs kept elsewhere (e.g. docs/reproduction/, where each finished run's eval.csv and
summary.json are committed as <game>/<preset>/seed_<n>/): a run found in both is read from ROOT.

A curve preset (CURVE_PRESETS: dopamine_dqn) is compared by learning curve instead: every evaluation in a run's
eval.csv (finished or not; the mean return of its episodes) at the frames of a published iteration — Dopamine's
iteration i is the evaluation after (i + 1) × 1M training frames — against the band of the published runs at that
iteration (min, mean and max over their 5 seeds). Per game: a table of our score(s) against the band at each evaluated
iteration (an even selection of them past 25), a verdict at the last evaluated iteration (inside the seeds' min–max
band or not), and a figure of our curve over the band, ROOT/reproduction_<game>.png, next to reproduction.md.
"""

import dataclasses
import json
import os
import sys
from typing import Any, Callable, Sequence

from absl import flags
import numpy as np

from plasticity_rl import atari_games
from plasticity_rl import cli
from plasticity_rl import published

# preset name -> (config file in the package's configs/, the published runs it is compared with).
PRESETS = {"drq_eps": ("drq_eps.py", "drq_eps_atari100k"),
           "dopamine_dqn": ("dopamine_dqn.py", "dopamine_dqn_atari")}
# Presets compared by learning curve (published.load_curves) -> training frames per published iteration.
CURVE_PRESETS = {"dopamine_dqn": 250_000 * 4}  # Dopamine's Runner.training_steps (agent steps) × 4 frames.
# An evaluation counts as a published iteration's when its frames are within this fraction of an iteration's frames
# of (iteration + 1) × frames per iteration (the loop evaluates at the first step past each period).
ITERATION_TOLERANCE = 0.01
MAX_TABLE_ROWS = 25  # Per game in reproduction.md; reproduction.json holds every evaluated iteration.


class ReproduceError(ValueError):
  """Bad input; the message is one line."""


@dataclasses.dataclass(frozen=True)
class GameRow:
  game: str
  scores: tuple[float, ...]  # Ours: one final-evaluation mean per finished seed.
  seeds: tuple[int, ...]
  published_p10: float
  published_median: float
  published_p90: float
  published_runs: int
  random: float
  human: float

  @property
  def verdict(self) -> str:
    if not self.scores:
      return "not run yet"
    inside = [self.published_p10 <= s <= self.published_p90 for s in self.scores]
    if all(inside):
      return "inside 10–90 %"
    low = [s < self.published_p10 for s in self.scores]
    return ("below" if all(low) else "above" if not any(low) and not any(inside) else "mixed") + " the 10–90 % band"


def final_score(run_dir: str) -> float | None:
  """The mean return of a finished run's final evaluation (summary.json + eval.csv), or None if unfinished."""
  summary_path = os.path.join(run_dir, "summary.json")
  if not os.path.exists(summary_path):
    return None
  with open(summary_path) as f:
    summary = json.load(f)
  frames = summary["frames"]
  returns = [r["episode_return"] for r in _eval_rows(os.path.join(run_dir, "eval.csv")) if r["frames"] == frames]
  if not returns:
    raise ReproduceError(f"{run_dir}: summary.json says {frames:,} frames but eval.csv has no rows at that frame")
  return float(np.mean(returns))


def _eval_rows(path: str) -> list[dict]:
  import csv  # pylint: disable=g-import-not-at-top
  with open(path, newline="") as f:
    return [{**row, "frames": int(row["frames"]), "episode_return": float(row["episode_return"])}
            for row in csv.DictReader(f)]


def _first_found(dirs: Sequence[str], preset: str, games: Sequence[str], seeds: Sequence[int],
                 read: Callable[[str], Any]) -> dict[str, dict[int, Any]]:
  """{game: {seed: read(run dir)}} from the first of `dirs` where `read` finds the run (does not return None)."""
  out: dict[str, dict[int, Any]] = {g: {} for g in games}
  for game in games:
    for seed in seeds:
      for d in dirs:
        value = read(os.path.join(d, game, preset, f"seed_{seed}"))
        if value is not None:
          out[game][seed] = value
          break
  return out


def collect(dirs: Sequence[str], preset: str, games: Sequence[str], seeds: Sequence[int]) -> dict[str, dict[int, float]]:
  """{game: {seed: final score}} of the finished runs under the first of `dirs` that has each."""
  return _first_found(dirs, preset, games, seeds, final_score)


def table(preset: str, ours: dict[str, dict[int, float]]) -> list[GameRow]:
  reference = published.load(PRESETS[preset][1])
  rows = []
  for game, by_seed in ours.items():
    if game not in reference:
      raise ReproduceError(f"{game}: no published {preset} runs (they cover {', '.join(sorted(reference))})")
    runs = reference[game]
    p10, p50, p90 = np.percentile(runs, [10, 50, 90])
    entry = atari_games.score_table()[game]
    random, human = entry.random, entry.human
    seeds = tuple(sorted(by_seed))
    rows.append(GameRow(game, tuple(by_seed[s] for s in seeds), seeds, float(p10), float(p50), float(p90),
                        len(runs), random, human))
  return rows


def hns(score, random: float, human: float):
  return (np.asarray(score, np.float64) - random) / (human - random)


def iqm_with_ci(matrix: np.ndarray, reps: int = 2_000, seed: int = 0) -> tuple[float, float, float]:
  """IQM of a [runs, games] matrix of normalised scores and its 95 % stratified-bootstrap CI (rliable)."""
  from rliable import library as rly  # pylint: disable=g-import-not-at-top
  from rliable import metrics  # pylint: disable=g-import-not-at-top
  if matrix.shape[0] < 2:  # A bootstrap over one run per game has no spread to resample.
    value = float(metrics.aggregate_iqm(matrix))
    return value, float("nan"), float("nan")
  np.random.seed(seed)
  points, cis = rly.get_interval_estimates({"x": matrix}, lambda m: np.array([metrics.aggregate_iqm(m)]), reps=reps)
  return float(points["x"][0]), float(cis["x"][0, 0]), float(cis["x"][1, 0])


def aggregate(preset: str, rows: Sequence[GameRow]) -> dict[str, dict]:
  """IQM of HNS over the games that we have run, for us and for the published runs on those games."""
  done = [r for r in rows if r.scores]
  if not done:
    return {}
  reference = published.load(PRESETS[preset][1])
  n_ours = min(len(r.scores) for r in done)  # The same number of runs per game (rliable's matrix).
  ours = np.stack([hns(r.scores[:n_ours], r.random, r.human) for r in done], axis=1)
  n_pub = min(len(reference[r.game]) for r in done)
  theirs = np.stack([hns(reference[r.game][:n_pub], r.random, r.human) for r in done], axis=1)
  out = {}
  for name, matrix in (("ours", ours), ("published", theirs)):
    iqm, lo, hi = iqm_with_ci(matrix)
    out[name] = {"iqm_hns": iqm, "ci_low": lo, "ci_high": hi, "runs_per_game": int(matrix.shape[0]),
                 "games": [r.game for r in done]}
  return out


def _fmt(x: float) -> str:
  return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:,.1f}"


def markdown(preset: str, rows: Sequence[GameRow], agg: dict[str, dict]) -> str:
  lines = [f"# Reproduction of {preset}", "",
           "| game | our score(s) | seeds | published p10 | median | p90 | runs | random | human | verdict |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    ours = ", ".join(_fmt(s) for s in r.scores) or "–"
    lines.append(f"| {r.game} | {ours} | {','.join(map(str, r.seeds)) or '–'} | {_fmt(r.published_p10)} | "
                 f"{_fmt(r.published_median)} | {_fmt(r.published_p90)} | {r.published_runs} | {_fmt(r.random)} | "
                 f"{_fmt(r.human)} | {r.verdict} |")
  if agg:
    lines += ["", f"IQM of human-normalised score over {len(agg['ours']['games'])} game(s) "
              f"({', '.join(agg['ours']['games'])}), 95 % stratified-bootstrap CI:", ""]
    for name, a in agg.items():
      ci = ("no CI: one run per game" if np.isnan(a["ci_low"]) else
            f"[{a['ci_low']:.3f}, {a['ci_high']:.3f}]" + (" (fewer than 3 runs per game: a rough CI)"
                                                          if a["runs_per_game"] < 3 else ""))
      lines.append(f"- {name}: {a['iqm_hns']:.3f} {ci}, {a['runs_per_game']} run(s) per game")
  missing = [r.game for r in rows if not r.scores]
  if missing:
    lines += ["", f"Not finished yet: {', '.join(missing)}."]
  return "\n".join(lines) + "\n"


def report(preset: str, games: Sequence[str], seeds: Sequence[int], dirs: Sequence[str], out_dir: str | None) -> str:
  if preset in CURVE_PRESETS:
    return curve_report(preset, games, seeds, dirs, out_dir)
  rows = table(preset, collect(dirs, preset, games, seeds))
  agg = aggregate(preset, rows)
  text = markdown(preset, rows, agg)
  if out_dir:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "reproduction.md"), "w") as f:
      f.write(text)
    with open(os.path.join(out_dir, "reproduction.json"), "w") as f:
      json.dump({"preset": preset, "games": [dataclasses.asdict(r) | {"verdict": r.verdict} for r in rows],
                 "aggregate": agg}, f, indent=1)
  return text


# Learning-curve comparison (CURVE_PRESETS).


def eval_curve(run_dir: str) -> list[tuple[int, float]] | None:
  """(frames, mean return of that evaluation's episodes) for every evaluation in a run's eval.csv, by frames; None
  when the run has no eval.csv (not started). Finished or not: a curve is compared as far as it goes."""
  path = os.path.join(run_dir, "eval.csv")
  if not os.path.exists(path):
    return None
  by_frames: dict[int, list[float]] = {}
  for row in _eval_rows(path):
    by_frames.setdefault(row["frames"], []).append(row["episode_return"])
  return [(frames, float(np.mean(returns))) for frames, returns in sorted(by_frames.items())]


def collect_curves(dirs: Sequence[str], preset: str, games: Sequence[str],
                   seeds: Sequence[int]) -> dict[str, dict[int, list[tuple[int, float]]]]:
  """{game: {seed: eval curve}} of the runs under the first of `dirs` that has each run's eval.csv."""
  return _first_found(dirs, preset, games, seeds, eval_curve)


def iteration_of(frames: int, frames_per_iteration: int) -> int | None:
  """The published iteration whose evaluation an evaluation at `frames` training frames matches, or None."""
  i = round(frames / frames_per_iteration) - 1
  if i >= 0 and abs(frames - (i + 1) * frames_per_iteration) <= ITERATION_TOLERANCE * frames_per_iteration:
    return i
  return None


def band_verdict(scores: Sequence[float], low: float, high: float) -> str:
  inside = [low <= s <= high for s in scores]
  if all(inside):
    return "inside the min–max band"
  below = [s < low for s in scores]
  above = [s > high for s in scores]
  return ("below" if all(below) else "above" if all(above) else "mixed") + " the min–max band"


@dataclasses.dataclass(frozen=True)
class CurvePoint:
  """Our evaluation(s) at one published iteration, and the published runs' band there."""
  iteration: int
  frames: int  # (iteration + 1) × frames per iteration: the training frames the published runs had.
  scores: tuple[float, ...]  # Ours, one per seed evaluated at this iteration.
  seeds: tuple[int, ...]
  published_min: float
  published_mean: float
  published_max: float

  @property
  def verdict(self) -> str:
    return band_verdict(self.scores, self.published_min, self.published_max)


@dataclasses.dataclass(frozen=True)
class GameCurve:
  game: str
  seeds: tuple[int, ...]  # Our seeds with at least one evaluation.
  points: tuple[CurvePoint, ...]  # Every published iteration at which at least one of our seeds evaluated.
  ours: dict[int, tuple[tuple[int, float], ...]]  # seed -> every (frames, mean return), for the figure.
  off_iteration: tuple[int, ...]  # Frames of our evaluations at no published iteration (not compared).
  published_runs: int
  published_iterations: int
  frames_per_iteration: int

  @property
  def verdict(self) -> str:
    if not self.ours:
      return "not run yet"
    if not self.points:
      return "no evaluation at a published iteration yet"
    last = self.points[-1]
    return f"{last.verdict} at iteration {last.iteration}"


def curve_table(preset: str, ours: dict[str, dict[int, list[tuple[int, float]]]]) -> list[GameCurve]:
  reference = published.load_curves(PRESETS[preset][1])
  per_iteration = CURVE_PRESETS[preset]
  out = []
  for game, by_seed in ours.items():
    if game not in reference:
      raise ReproduceError(f"{game}: no published {preset} curves (they cover {', '.join(sorted(reference))})")
    band = reference[game]
    lows, means, highs = band.min(axis=0), band.mean(axis=0), band.max(axis=0)
    at: dict[int, dict[int, float]] = {}  # iteration -> {seed: score}
    off = set()
    for seed, curve in by_seed.items():
      for frames, score in curve:
        i = iteration_of(frames, per_iteration)
        if i is None or i >= band.shape[1]:
          off.add(frames)
        else:
          at.setdefault(i, {})[seed] = score
    points = tuple(CurvePoint(i, (i + 1) * per_iteration, tuple(at[i][s] for s in sorted(at[i])), tuple(sorted(at[i])),
                              float(lows[i]), float(means[i]), float(highs[i])) for i in sorted(at))
    out.append(GameCurve(game, tuple(sorted(s for s, c in by_seed.items() if c)), points,
                         {s: tuple(c) for s, c in sorted(by_seed.items()) if c}, tuple(sorted(off)), band.shape[0],
                         band.shape[1], per_iteration))
  return out


def shown_points(points: Sequence[CurvePoint], max_rows: int = MAX_TABLE_ROWS) -> list[CurvePoint]:
  """All points, or `max_rows` of them evenly spread over the evaluated iterations (first and last included)."""
  if len(points) <= max_rows:
    return list(points)
  return [points[k] for k in sorted(set(np.linspace(0, len(points) - 1, max_rows).round().astype(int)))]


def _frames(frames: int) -> str:
  return f"{frames / 1e6:g}M" if frames >= 1_000_000 else f"{frames:,}"


def curve_markdown(preset: str, curves: Sequence[GameCurve], figures: dict[str, str] | None = None) -> str:
  figures = figures or {}
  per_iteration = CURVE_PRESETS[preset]
  lines = [f"# Reproduction of {preset}", "",
           f"Learning curves against the published runs ({PRESETS[preset][1]}, data/{PRESETS[preset][1]}.SOURCE.md): "
           f"published iteration i is the evaluation after (i + 1) × {_frames(per_iteration)} training frames; the "
           "band is the min–max (and mean) over the published seeds at that iteration. Our score is the mean return "
           "of one evaluation of ours at those frames.", "",
           "| game | last evaluated iteration | frames | our score(s) | seeds | published min | mean | max | verdict |",
           "|---|---|---|---|---|---|---|---|---|"]
  for c in curves:
    if c.points:
      p = c.points[-1]
      lines.append(f"| {c.game} | {p.iteration} | {_frames(p.frames)} | {', '.join(_fmt(s) for s in p.scores)} | "
                   f"{','.join(map(str, p.seeds))} | {_fmt(p.published_min)} | {_fmt(p.published_mean)} | "
                   f"{_fmt(p.published_max)} | {c.verdict} |")
    else:
      seeds = ",".join(map(str, c.seeds)) or "–"
      lines.append(f"| {c.game} | – | – | – | {seeds} | – | – | – | {c.verdict} |")
  for c in curves:
    lines += ["", f"## {c.game}", ""]
    if c.game in figures:
      lines += [f"![{c.game}: our curve over the published band]({figures[c.game]})", ""]
    if c.points:
      shown = shown_points(c.points)
      if len(shown) < len(c.points):
        lines += [f"{len(shown)} of {len(c.points)} evaluated iterations shown (all in reproduction.json).", ""]
      lines += ["| iteration | frames | our score(s) | seeds | published min | mean | max | vs band |",
                "|---|---|---|---|---|---|---|---|"]
      for p in shown:
        lines.append(f"| {p.iteration} | {_frames(p.frames)} | {', '.join(_fmt(s) for s in p.scores)} | "
                     f"{','.join(map(str, p.seeds))} | {_fmt(p.published_min)} | {_fmt(p.published_mean)} | "
                     f"{_fmt(p.published_max)} | {p.verdict.removesuffix(' the min–max band')} |")
      lines.append("")
    elif not c.ours:
      lines += ["No evaluation yet.", ""]
    band = published.load_curves(PRESETS[preset][1])[c.game]
    last = band.shape[1] - 1
    lines.append(f"Published at the final iteration {last} ({_frames((last + 1) * per_iteration)} frames): mean "
                 f"{_fmt(float(band[:, last].mean()))}, min–max [{_fmt(float(band[:, last].min()))}, "
                 f"{_fmt(float(band[:, last].max()))}] over {band.shape[0]} runs.")
    if c.off_iteration:
      listed = ", ".join(f"{f:,}" for f in c.off_iteration[:10]) + (", …" if len(c.off_iteration) > 10 else "")
      lines.append(f"Not compared: {len(c.off_iteration)} evaluation frame count(s) at no published iteration "
                   f"({listed}).")
  missing = [c.game for c in curves if not c.ours]
  if missing:
    lines += ["", f"Not run yet: {', '.join(missing)}."]
  return "\n".join(lines) + "\n"


_OUR_COLORS = ("tab:orange", "tab:red", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def plot_curve(preset: str, curve: GameCurve, path: str) -> None:
  """Our curve(s) over the published band: the frames we reached (left) and the published runs' whole length."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  band = published.load_curves(PRESETS[preset][1])[curve.game]
  per_iteration = curve.frames_per_iteration
  x = (np.arange(band.shape[1]) + 1) * per_iteration / 1e6
  reached = max((f for c in curve.ours.values() for f, _ in c), default=0)
  zoom = max(1.1 * reached, 10 * per_iteration) / 1e6
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for ax, right in zip(axes, (zoom, x[-1] * 1.02)):
    keep = x <= right
    ax.fill_between(x[keep], band.min(axis=0)[keep], band.max(axis=0)[keep], alpha=0.3, color="tab:blue",
                    label=f"published min–max ({band.shape[0]} runs)")
    ax.plot(x[keep], band.mean(axis=0)[keep], color="tab:blue", label="published mean")
    for k, (seed, points) in enumerate(curve.ours.items()):
      frames, scores = zip(*points)
      ax.plot(np.asarray(frames) / 1e6, scores, marker="o", markersize=3, color=_OUR_COLORS[k % len(_OUR_COLORS)],
              label=f"ours, seed {seed}")
    ax.set_xlim(0, right)
    ax.set_xlabel("training frames (M)")
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("mean evaluation return")
  axes[0].set_title(f"{curve.game}: the first {zoom:.3g}M frames")
  axes[1].set_title(f"{curve.game}: all {band.shape[1]} iterations")
  axes[1].legend(fontsize=7, loc="lower right")
  fig.suptitle(f"{preset} vs {PRESETS[preset][1]} — {curve.verdict}", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def curve_report(preset: str, games: Sequence[str], seeds: Sequence[int], dirs: Sequence[str],
                 out_dir: str | None) -> str:
  curves = curve_table(preset, collect_curves(dirs, preset, games, seeds))
  figures = {}
  if out_dir:
    os.makedirs(out_dir, exist_ok=True)
    for c in curves:
      figures[c.game] = f"reproduction_{c.game}.png"
      plot_curve(preset, c, os.path.join(out_dir, figures[c.game]))
  text = curve_markdown(preset, curves, figures)
  if out_dir:
    with open(os.path.join(out_dir, "reproduction.md"), "w") as f:
      f.write(text)
    with open(os.path.join(out_dir, "reproduction.json"), "w") as f:
      json.dump({"preset": preset, "published": PRESETS[preset][1], "frames_per_iteration": CURVE_PRESETS[preset],
                 "games": [{"game": c.game, "verdict": c.verdict, "seeds": list(c.seeds),
                            "published_runs": c.published_runs, "published_iterations": c.published_iterations,
                            "points": [dataclasses.asdict(p) | {"verdict": p.verdict} for p in c.points],
                            "not_compared_frames": list(c.off_iteration), "figure": figures.get(c.game),
                            "ours": {str(s): [list(p) for p in pts] for s, pts in c.ours.items()}}
                           for c in curves]}, f, indent=1)
  return text


def launch(preset: str, games: Sequence[str], seeds: Sequence[int], root: str, parallel: int,
           overrides: Sequence[str] = (), smoke: bool = False) -> int:
  """Runs (or resumes) every unfinished run through the sweep launcher; returns the number that failed."""
  from plasticity_rl import sweep  # pylint: disable=g-import-not-at-top
  config = os.path.join(cli.CONFIGS_DIR, PRESETS[preset][0]) + (":smoke" if smoke else "")
  runs = sweep.expand(root, config, games, {preset: {}}, seeds, overrides)
  manifest = sweep.Manifest.open(root, sweep.config_spec(config), list(overrides))
  processes = sweep.group(runs)
  conflicts = sweep.check(runs, processes)
  if conflicts:
    raise ReproduceError("; ".join(f"{k}: {v}" for k, v in conflicts.items()))
  with sweep.root_lock(root):
    manifest.add_launch([sys.executable, *sys.argv], "local", runs, processes)
    manifest.save()
    return sweep.run_local(runs, manifest, parallel=parallel, gpus=sweep.detect_gpus(), processes=processes)


RESULT_FILES = ("eval.csv", "summary.json")  # A finished run's small result files, enough for the report.


def keep_results(root: str, keep_dir: str, preset: str, games: Sequence[str], seeds: Sequence[int]) -> list[str]:
  """Copies each finished run's RESULT_FILES from ROOT to KEEP/<game>/<preset>/seed_<n>/ (e.g. docs/reproduction,
  to commit), so the table can be rebuilt from kept results when the workdirs are gone; returns the runs kept."""
  import shutil  # pylint: disable=g-import-not-at-top
  kept = []
  for game in games:
    for seed in seeds:
      run = os.path.join(game, preset, f"seed_{seed}")
      if final_score(os.path.join(root, run)) is None:
        continue
      os.makedirs(os.path.join(keep_dir, run), exist_ok=True)
      for name in RESULT_FILES:
        shutil.copyfile(os.path.join(root, run, name), os.path.join(keep_dir, run, name))
      kept.append(run)
  return kept


_PRESET = cli.flag(flags.DEFINE_enum, "preset", None, sorted(PRESETS), "The preset to run and compare.")
_GAMES = cli.flag(flags.DEFINE_list, "games", None, "Games, comma-separated, e.g. Boxing,Breakout,Seaquest.")
_SEEDS = cli.flag(flags.DEFINE_list, "seeds", ["0"], "Seeds, comma-separated.")
_ROOT = cli.flag(flags.DEFINE_string, "root", None, "Sweep directory of the runs.")
_PARALLEL = cli.flag(flags.DEFINE_integer, "parallel", 2, "Runs at a time (default 2: one per core here).", lower_bound=1)
_RESULTS = cli.flag(flags.DEFINE_multi_string, "results", [], "More directories of finished runs (repeatable).")
_OVERRIDE = cli.flag(flags.DEFINE_multi_string, "override", [], "field=value for every run (repeatable; not a "
                                      "reproduction then: the report says so).")
_REPORT_ONLY = cli.flag(flags.DEFINE_bool, "report_only", False, "Report on what has finished; launch nothing.")
_KEEP = cli.flag(flags.DEFINE_string, "keep", None, "Copy each finished run's eval.csv and summary.json here (e.g. "
                            "docs/reproduction, to commit) and read kept runs from it too.")
_SMOKE = cli.flag(flags.DEFINE_bool, "smoke", False, "The preset's :smoke scale (seconds; for tests, not a reproduction).")
cli.mark_required(["preset", "games", "root"])


def main(argv: Sequence[str]) -> int:
  cli.no_arguments(argv)
  args = flags.FLAGS
  try:
    games = [atari_games.canonical_game(g) or g for g in args.games if g]
    try:
      seeds = [int(s) for s in args.seeds if s]
    except ValueError:
      raise ReproduceError(f"--seeds: integers, comma-separated; got {','.join(args.seeds)}") from None
    root = os.path.abspath(os.path.expanduser(args.root))
    failed = 0
    if not args.report_only:
      failed = launch(args.preset, games, seeds, root, args.parallel, args.override, smoke=args.smoke)
    if args.keep:
      keep_results(root, os.path.abspath(args.keep), args.preset, games, seeds)
    text = report(args.preset, games, seeds, [root, *args.results, *([args.keep] if args.keep else [])], root)
  except (ReproduceError, ValueError) as e:
    cli.fail(e)
  shortened = args.preset in CURVE_PRESETS and args.override and all(
      o.split("=", 1)[0].strip() == "total_frames" for o in args.override)
  if shortened and not args.smoke:  # A shorter run of the same preset: its curve is compared as far as it goes.
    text += (f"\nOverrides {args.override}: the preset, run for fewer frames; its curve is compared with the "
             "published iterations it reaches.\n")
  elif args.override or args.smoke:
    text += (f"\n{'The :smoke scale' if args.smoke else f'Overrides {args.override}'}: these runs depart from the "
             "preset, so this is not a reproduction.\n")
  print(text)
  return 1 if failed else 0


def run():
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
