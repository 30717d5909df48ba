r"""Reproduction: run a preset on games × seeds and compare the scores with the published runs of that setup.

  plasticity-rl-reproduce --preset=drq_eps --games=Boxing,Breakout,Seaquest --seeds=0 --root=runs/reproduce
  plasticity-rl-reproduce --preset=drq_eps --games=Boxing --seeds=0 --root=runs/reproduce --report_only

The runs go through the sweep launcher (plasticity_rl/sweep.py): ROOT/<game>/<preset>/seed_<n>, one process
per run, --parallel at a time; the same command again skips finished runs and resumes stopped ones from their
checkpoints. Then the report: per game our final score(s) (the mean return of the final evaluation, as the
published runs report), the published 10th / 50th / 90th percentiles over their runs, the random and human
scores, and a verdict — inside the published 10–90 % band or not — plus the IQM of human-normalised scores with
95 % stratified-bootstrap CIs for us and for the published runs on the same games. Printed, and written to
ROOT/reproduction.md and ROOT/reproduction.json.

--results DIR adds finished runs kept elsewhere (e.g. docs/reproduction/, where each finished run's eval.csv and
summary.json are committed as <game>/<preset>/seed_<n>/): a run found in both is read from ROOT.
"""

import dataclasses
import json
import os
import sys
from typing import Sequence

import numpy as np

from plasticity_rl import atari_games
from plasticity_rl import published

# preset name -> (config file relative to the repo, the published runs it is compared with).
PRESETS = {"drq_eps": ("configs/drq_eps.py", "drq_eps_atari100k")}
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def collect(dirs: Sequence[str], preset: str, games: Sequence[str], seeds: Sequence[int]) -> dict[str, dict[int, float]]:
  """{game: {seed: final score}} of the finished runs under the first of `dirs` that has each."""
  out: dict[str, dict[int, float]] = {g: {} for g in games}
  for game in games:
    for seed in seeds:
      for d in dirs:
        score = final_score(os.path.join(d, game, preset, f"seed_{seed}"))
        if score is not None:
          out[game][seed] = score
          break
  return out


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


def launch(preset: str, games: Sequence[str], seeds: Sequence[int], root: str, parallel: int,
           overrides: Sequence[str] = (), smoke: bool = False) -> int:
  """Runs (or resumes) every unfinished run through the sweep launcher; returns the number that failed."""
  from plasticity_rl import sweep  # pylint: disable=g-import-not-at-top
  config = os.path.join(_REPO, PRESETS[preset][0]) + (":smoke" if smoke else "")
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


def main(argv: Sequence[str] | None = None) -> int:
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="plasticity-rl-reproduce")
  parser.add_argument("--preset", required=True, choices=sorted(PRESETS))
  parser.add_argument("--games", required=True, help="comma-separated, e.g. Boxing,Breakout,Seaquest")
  parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
  parser.add_argument("--root", required=True, help="sweep directory of the runs")
  parser.add_argument("--parallel", type=int, default=2, help="runs at a time (default 2: one per core here)")
  parser.add_argument("--results", action="append", default=[], help="more directories of finished runs")
  parser.add_argument("--override", action="append", default=[], help="field=value for every run (not a "
                      "reproduction then: the report says so)")
  parser.add_argument("--report_only", action="store_true", help="report on what has finished; launch nothing")
  parser.add_argument("--smoke", action="store_true", help="the preset's :smoke scale (seconds; for tests, not a "
                      "reproduction)")
  args = parser.parse_args(argv)
  try:
    games = [atari_games.canonical_game(g) or g for g in args.games.split(",") if g]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    root = os.path.abspath(os.path.expanduser(args.root))
    failed = 0
    if not args.report_only:
      failed = launch(args.preset, games, seeds, root, args.parallel, args.override, smoke=args.smoke)
    text = report(args.preset, games, seeds, [root, *args.results], root)
  except (ReproduceError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.override or args.smoke:
    text += (f"\n{'The :smoke scale' if args.smoke else f'Overrides {args.override}'}: these runs depart from the "
             "preset, so this is not a reproduction.\n")
  print(text)
  return 1 if failed else 0


def run():
  sys.exit(main())


if __name__ == "__main__":
  run()
