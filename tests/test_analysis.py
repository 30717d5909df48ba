"""Tests of plasticity_rl.analysis: loading, scores, rliable aggregates, CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from rliable import library as rly
from rliable import metrics

from plasticity_rl import atari_games
from plasticity_rl.analysis import aggregate
from plasticity_rl.analysis import load
from plasticity_rl.analysis import scores
from plasticity_rl.analysis.load import AnalysisError

GAMES = ("Pong", "Breakout", "Seaquest", "Qbert")
SMALL = dict(reps=300, poi_reps=30, curve_reps=50, profile_reps=50)


def _raw(game: str, hns: float) -> float:
  entry = atari_games.score_table()[game]
  return entry.random + hns * (entry.human - entry.random)


def _tidy(variants=("baseline", "inject"), games=GAMES, seeds=range(3), frames=(0, 1_000_000, 2_000_000),
          episodes=2, skip=(), rng_seed=0) -> pd.DataFrame:
  """Synthetic evaluation rows; `skip` holds (variant, game, seed) runs to leave out."""
  rng = np.random.default_rng(rng_seed)
  rows = []
  for v, variant in enumerate(variants):
    for game in games:
      for seed in seeds:
        if (variant, game, seed) in skip:
          continue
        for i, frame in enumerate(frames):
          for _ in range(episodes):
            hns = (1 + 0.5 * v) * i / max(1, len(frames) - 1) * rng.uniform(0.5, 1.5)
            rows.append(dict(game=game, variant=variant, seed=seed, frames=frame,
                             episode_return=_raw(game, hns), episode_frames=1000))
  return pd.DataFrame(rows)


def _write_workdir(path, df: pd.DataFrame | None) -> None:
  os.makedirs(path, exist_ok=True)
  if df is not None:
    df.to_csv(os.path.join(path, "eval.csv"), index=False)


def _results(df: pd.DataFrame) -> load.Results:
  return load.Results(df.rename(columns={"episode_return": "return"}).assign(source="test"), [])


# Human normalization.


def test_hns_against_table():
  df = pd.DataFrame({"game": ["Pong", "Pong", "Pong", "Breakout"], "score": [14.6, -20.7, -3.05, 30.5]})
  np.testing.assert_allclose(scores.add_hns(df)["hns"], [1.0, 0.0, 0.5, 1.0])
  assert atari_games.human_normalized("pong", 14.6) == pytest.approx(1.0)


# Per-run final scores and curves.


def test_final_score_and_curve_by_hand():
  episodes = pd.DataFrame({
      "variant": "v", "game": "Pong", "seed": 0,
      "frames": [200, 0, 0, 100, 200],  # Unsorted on purpose.
      "return": [9.0, 1.0, 3.0, 5.0, 7.0]})
  curve = scores.curves(episodes)
  assert list(curve["frames"]) == [0, 100, 200]
  assert list(curve["return"]) == [2.0, 5.0, 8.0]
  assert list(curve["episodes"]) == [2, 1, 2]
  final = scores.final_scores(curve, last_evals=1)
  assert final["score"].item() == 8.0 and final["last_frames"].item() == 200
  assert scores.final_scores(curve, last_evals=2)["score"].item() == 6.5
  long_window = scores.final_scores(curve, last_evals=5)
  assert long_window["score"].item() == 5.0 and long_window["points"].item() == 3
  assert any("only 3 evaluation point" in line for line in scores.gaps(long_window, [], None, 5))
  with pytest.raises(AnalysisError, match="last_evals"):
    scores.final_scores(curve, last_evals=0)


# Equality with rliable.


def _rliable_func(x):
  return np.array([metrics.aggregate_iqm(x), metrics.aggregate_median(x), metrics.aggregate_mean(x),
                   metrics.aggregate_optimality_gap(x)])


def test_interval_estimates_equal_rliable():
  matrix = np.random.default_rng(1).normal(1.0, 0.6, size=(5, 8))
  points, intervals = aggregate.interval_estimates({"a": matrix}, aggregate.aggregate_metrics, reps=400, seed=7)
  np.random.seed(7)
  ref_points, ref_intervals = rly.get_interval_estimates({"a": matrix}, _rliable_func, reps=400)
  np.testing.assert_array_equal(points["a"], ref_points["a"])
  np.testing.assert_array_equal(intervals["a"], ref_intervals["a"])
  # Seeding is local: the global RNG is restored.
  state = np.random.get_state()[1].copy()
  aggregate.interval_estimates({"a": matrix}, aggregate.aggregate_metrics, reps=10, seed=0)
  np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_pipeline_aggregate_equals_rliable_on_its_matrix():
  rng = np.random.default_rng(2)
  hns = {v: rng.normal(1.0, 0.5, size=(4, len(GAMES))) for v in ("baseline", "inject")}
  rows = [dict(game=g, variant=v, seed=s, frames=100, episode_return=_raw(g, hns[v][s, j]))
          for v in hns for j, g in enumerate(GAMES) for s in range(4)]
  analysis = aggregate.analyze(_results(pd.DataFrame(rows)), seed=3, **SMALL)
  for variant, matrix in hns.items():
    games = analysis.matrices.games[variant]
    matrix = matrix[:, [GAMES.index(g) for g in games]]
    np.random.seed(3)
    ref_points, ref_intervals = rly.get_interval_estimates({variant: matrix}, _rliable_func, reps=SMALL["reps"])
    row = analysis.aggregate.set_index("variant").loc[variant]
    for i, name in enumerate(aggregate.METRICS):
      np.testing.assert_allclose(
          [row[name], row[f"{name} lo"], row[f"{name} hi"]],
          [ref_points[variant][i], *ref_intervals[variant][:, i]], rtol=1e-12, atol=1e-12)
  # Probability of improvement: rliable on the same pair of matrices.
  x = hns["inject"][:, [GAMES.index(g) for g in analysis.matrices.games["inject"]]]
  y = hns["baseline"][:, [GAMES.index(g) for g in analysis.matrices.games["baseline"]]]
  np.random.seed(3)
  ref_p, ref_ci = rly.get_interval_estimates({"p": [x, y]}, metrics.probability_of_improvement,
                                             reps=SMALL["poi_reps"])
  poi = analysis.improvement.iloc[0]
  assert (poi["x"], poi["y"]) == ("inject", "baseline")
  np.testing.assert_allclose([poi["P(x > y)"], poi["lo"], poi["hi"]], [ref_p["p"], *np.ravel(ref_ci["p"])])


def test_curve_and_profile_equal_rliable():
  tensor = np.random.default_rng(3).normal(size=(3, 5, 4))
  points, intervals = aggregate.interval_estimates({"a": tensor}, aggregate.iqm_per_frame, reps=200, seed=1)
  per_frame = lambda x: np.array([metrics.aggregate_iqm(x[..., f]) for f in range(x.shape[-1])])
  np.random.seed(1)
  ref_points, ref_intervals = rly.get_interval_estimates({"a": tensor}, per_frame, reps=200)
  np.testing.assert_allclose(points["a"], ref_points["a"], rtol=1e-12)
  np.testing.assert_allclose(intervals["a"], ref_intervals["a"], rtol=1e-12)

  matrix = tensor[..., 0]
  matrices = scores.Matrices({"a": matrix}, {"a": list("abcde")}, {})
  taus = np.linspace(0, 2, 11)
  profiles, cis = aggregate.performance_profiles(matrices, taus, reps=100, seed=4)
  np.random.seed(4)
  ref_profiles, ref_cis = rly.create_performance_profile({"a": matrix}, taus, reps=100)
  np.testing.assert_array_equal(profiles["a"], ref_profiles["a"])
  np.testing.assert_array_equal(cis["a"], ref_cis["a"])


# Unequal seeds and gaps.


def test_unequal_seeds_keep_common_seeds_and_report():
  skip = {("inject", "Qbert", 1), ("inject", "Pong", 2), ("baseline", "Breakout", 0)}
  df = _tidy(seeds=range(4), skip=skip, games=GAMES[:3] + ("Qbert",))
  analysis = aggregate.analyze(_results(df), **SMALL)
  m = analysis.matrices
  assert m.scores["inject"].shape == (3, 4) and m.scores["baseline"].shape == (3, 4)
  assert m.seeds["inject"]["Breakout"] == [0, 1, 3]  # Common seeds {0, 3}, then the lowest other.
  assert m.seeds["inject"]["Qbert"] == [0, 2, 3]
  gaps = "\n".join(analysis.gaps)
  assert "variant inject: seed(s) [1] missing on 1 game(s): ['Qbert']" in gaps
  assert "variant baseline: seed(s) [0] missing on 1 game(s): ['Breakout']" in gaps
  assert "left out of the aggregates" in gaps


def test_missing_game_and_empty_runs_are_gaps_and_rest_aggregates(tmp_path):
  df = _tidy(skip={("inject", "Seaquest", s) for s in range(3)})
  for (variant, game, seed), rows in df.groupby(["variant", "game", "seed"]):
    _write_workdir(tmp_path / "sweep" / f"{variant}_{game}_{seed}", rows)
  empty = tmp_path / "sweep" / "inject_Seaquest_0"
  _write_workdir(empty, df.iloc[:0])
  (empty / "config.json").write_text('{"variant": "inject", "game": "Seaquest", "seed": 0}')
  _write_workdir(tmp_path / "sweep" / "crashed", None)
  (tmp_path / "sweep" / "crashed" / "config.json").write_text("{}")  # main.py writes it before training.
  (tmp_path / "sweep" / "not_a_run").mkdir()  # No config.json, no eval.csv: skipped, not a gap.
  results = load.load_results(runs=[str(tmp_path / "sweep" / "*")])
  assert len(results.episodes) == len(df)
  assert len(results.empty_runs) == 2 and results.skipped == (str(tmp_path / "sweep" / "not_a_run"),)
  analysis = aggregate.analyze(results, **SMALL)
  gaps = "\n".join(analysis.gaps)
  assert "variant=inject game=Seaquest seed=0" in gaps and "crashed: no eval.csv" in gaps
  assert "variant inject: 1 game(s) missing: ['Seaquest']" in gaps
  assert set(analysis.aggregate["variant"]) == {"baseline", "inject"}
  assert list(analysis.aggregate["games"]) == [4, 3]
  # A declared game set: its missing games are gaps, games outside it are left out (and said so).
  analysis = aggregate.analyze(results, games=atari_games.ATARI5 + ("Pong",), **SMALL)
  gaps = "\n".join(analysis.gaps)
  assert "variant baseline: 4 game(s) missing: ['BattleZone', 'DoubleDunk', 'NameThisGame', 'Phoenix']" in gaps
  assert "left out of the aggregates: ['Breakout', 'Seaquest']" in gaps
  assert analysis.matrices.games["baseline"] == ["Pong", "Qbert"]


def test_sweep_root_lists_its_runs_and_unstarted_ones_are_gaps(tmp_path):
  """--runs ROOT reads ROOT/sweep.json (as the launcher writes it); logs/ and other dirs are not runs."""
  import json  # pylint: disable=g-import-not-at-top
  df = _tidy(variants=("baseline",), games=("Pong",), seeds=range(2))
  root = tmp_path / "sweep"
  names = [f"Pong/baseline/seed_{s}" for s in range(3)]
  for seed, name in enumerate(names[:2]):
    _write_workdir(root / name, df[df.seed == seed])
  (root / "logs" / "Pong" / "baseline").mkdir(parents=True)
  (root / "sweep.json").write_text(json.dumps({"runs": [{"name": n, "workdir": "/elsewhere/" + n} for n in names]}))
  results = load.load_results(runs=[str(root)])
  assert len(results.episodes) == len(df)
  assert results.empty_runs == [f"{root / names[2]}: not started (no workdir)"]
  (root / names[2]).mkdir()
  assert load.load_results(runs=[str(root)]).empty_runs == [f"{root / names[2]}: no eval.csv"]
  (root / "sweep.json").write_text("{")
  with pytest.raises(AnalysisError, match="sweep.json: not a readable sweep manifest"):
    load.load_results(runs=[str(root)])


def _run_layout(root) -> pd.DataFrame:
  """A sweep root (sweep.json, logs/, runs with tb/ event files and checkpoints/) beside a single run, as
  main.py and the launcher write them under runs/."""
  import json  # pylint: disable=g-import-not-at-top
  df = _tidy(variants=("baseline",), games=("Pong", "Breakout"), seeds=range(2))
  sweep_root = root / "example"
  names = []
  for (variant, game, seed), rows in df.groupby(["variant", "game", "seed"]):
    names.append(f"{game}/{variant}/seed_{seed}")
    run = sweep_root / names[-1]
    _write_workdir(run, rows)
    (run / "config.json").write_text("{}")
    (run / "tb").mkdir()
    (run / "tb" / "events.out.tfevents.1.host").write_bytes(b"\x00\x01not a csv")
    (run / "checkpoints" / "1000").mkdir(parents=True)
    (run / "checkpoints" / "1000" / "_CHECKPOINT_METADATA").write_text("{}")
  (sweep_root / "logs" / "Pong" / "baseline").mkdir(parents=True)
  (sweep_root / "logs" / "Pong" / "baseline" / "seed_0.log").write_text("log\n")
  (sweep_root / "sweep.json").write_text(json.dumps({"runs": [{"name": n} for n in names]}))
  single = _tidy(variants=("inject",), games=("Pong",), seeds=(0,))
  _write_workdir(root / "pong", single)
  (root / "pong" / "config.json").write_text("{}")
  (root / "pong" / "tb").mkdir()
  (root / "pong" / "tb" / "events.out.tfevents.2.host").write_bytes(b"\x00")
  return pd.concat([df, single])


def test_runs_accepts_a_root_run_dirs_or_globs_and_skips_what_is_no_run(tmp_path):
  """The README's `--runs 'runs/*/*/*'` matches tfevents files, checkpoints/ and logs/: skipped, and counted."""
  df = _run_layout(tmp_path / "runs")
  for patterns in ([str(tmp_path / "runs")], [str(tmp_path / "runs" / "*")],
                   [str(tmp_path / "runs" / "example"), str(tmp_path / "runs" / "pong")]):
    results = load.load_results(runs=patterns)
    assert len(results.episodes) == len(df) and results.empty_runs == [] and not results.skipped, patterns
  glob_results = load.load_results(runs=[str(tmp_path / "runs" / "*" / "*" / "*")])
  # runs/*/*/*: example/<game>/baseline (the runs under them), example/logs/Pong (skipped), pong/tb/<file> (skipped).
  assert len(glob_results.episodes) == len(df[df.variant == "baseline"])
  assert sorted(glob_results.skipped) == [str(tmp_path / "runs" / "example" / "logs" / "Pong"),
                                          str(tmp_path / "runs" / "pong" / "tb" / "events.out.tfevents.2.host")]
  root_results = load.load_results(runs=[str(tmp_path / "runs" / "example" / "*")])
  assert sorted(root_results.skipped) == [str(tmp_path / "runs" / "example" / n) for n in ("logs", "sweep.json")]
  with pytest.raises(AnalysisError, match="no evaluation rows in any input; skipped 1 --runs path"):
    load.load_results(runs=[str(tmp_path / "runs" / "example" / "logs")])


def test_cli_runs_glob_says_how_many_it_skipped(tmp_path):
  _run_layout(tmp_path / "runs")
  out = tmp_path / "results"
  proc = _cli(f"--runs={tmp_path / 'runs' / '*' / '*' / '*'}", f"--out={out}", "--reps=100", "--poi_reps=20",
              "--curve_reps=20", "--profile_reps=20")
  assert proc.returncode == 0, proc.stderr
  lines = [line for line in proc.stderr.splitlines() if line.startswith("skipped")]
  assert len(lines) == 1 and lines[0].startswith("skipped 2 --runs path(s) that are no run directory"), proc.stderr
  assert "| baseline |" in proc.stdout


def test_runs_ending_early_are_reported():
  df = _tidy()
  df = df[~((df["variant"] == "inject") & (df["game"] == "Pong") & (df["seed"] == 1) & (df["frames"] > 0))]
  analysis = aggregate.analyze(_results(df), **SMALL)
  assert any("end before 2,000,000 frames" in line and "Pong seed 1 at 0" in line for line in analysis.gaps)
  assert any("1 of 3 frame values" in line for line in analysis.gaps)


def test_comparisons():
  assert aggregate.comparisons(["a", "baseline", "c"], None) == [("a", "baseline"), ("c", "baseline")]
  assert aggregate.comparisons(["a", "b"], ["b", "a"]) == [("a", "b")]
  with pytest.raises(AnalysisError, match="unknown variant"):
    aggregate.comparisons(["a", "b"], ["a", "zzz"])


# Loading and bad input.


def test_csv_synonyms_and_game_spellings(tmp_path):
  path = tmp_path / "r.csv"
  pd.DataFrame({"game": ["Pong-v5", "pong", "Pong"], "agent": "x", "seed": [0, 1, 2], "frames": 10,
                "return": [1.0, 2.0, 3.0]}).to_csv(path, index=False)
  episodes = load.load_results(csvs=[str(path)]).episodes
  assert list(episodes["game"]) == ["Pong"] * 3 and list(episodes["variant"]) == ["x"] * 3


@pytest.mark.parametrize("mutate, message", [
    (lambda df: df.drop(columns=["frames"]), "missing column.*frames"),
    (lambda df: df.drop(columns=["episode_return"]), r"missing column.*return \(or episode_return\)"),
    (lambda df: df.assign(episode_return=df["episode_return"].astype(object).where(df.index != 3, "oops")),
     "column 'return' must be a finite number.*line 5: 'oops'"),
    (lambda df: df.assign(game=df["game"].where(df.index != 0, "NotAGame")), r"unknown game.*NotAGame"),
    (lambda df: df.assign(seed=0.5), "column 'seed' must be an integer"),
])
def test_bad_csv(tmp_path, mutate, message):
  path = tmp_path / "bad.csv"
  mutate(_tidy()).to_csv(path, index=False)
  with pytest.raises(AnalysisError, match=message):
    load.load_results(csvs=[str(path)])


def test_empty_glob_and_duplicates(tmp_path):
  with pytest.raises(AnalysisError, match="nothing_here"):
    load.load_results(runs=[str(tmp_path / "nothing_here" / "*")])
  _write_workdir(tmp_path / "only_empty", _tidy().iloc[:0])
  with pytest.raises(AnalysisError, match="no evaluation rows"):
    load.load_results(runs=[str(tmp_path / "only_empty")])
  df = _tidy(variants=("b",), games=("Pong",), seeds=(0,))
  _write_workdir(tmp_path / "w1", df)
  _write_workdir(tmp_path / "w2", df)
  with pytest.raises(AnalysisError, match="appears in more than one input"):
    load.load_results(runs=[str(tmp_path / "w*")])
  with pytest.raises(AnalysisError, match="unknown game"):
    scores.expected_games("atari5,Pong")
  assert scores.expected_games("pong, Breakout-v5") == ("Pong", "Breakout")


# The CLI.


def _cli(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "plasticity_rl.analysis.aggregate", *args],
                        capture_output=True, text=True, timeout=120, check=False)


def test_cli_on_tidy_csv(tmp_path):
  path = tmp_path / "results.csv"
  _tidy(variants=("baseline", "inject", "reset"), skip={("reset", "Qbert", 2)}).to_csv(path, index=False)
  out = tmp_path / "out"
  proc = _cli("--csv", str(path), "--out", str(out), "--reps", "300", "--poi_reps", "30", "--curve_reps", "50",
              "--profile_reps", "50", "--seed", "1", "--compare", "baseline,inject", "--last_evals", "2")
  assert proc.returncode == 0, proc.stderr
  assert "| inject |" in proc.stdout and "P(inject > baseline)" in proc.stdout
  for name in ("aggregate.md", "aggregate.tex", "per_game.md", "per_game.tex", "gaps.txt",
               "probability_of_improvement.md"):
    assert (out / name).stat().st_size > 0, name
  aggregate_md = (out / "aggregate.md").read_text()
  assert all(f"| {v} |" in aggregate_md for v in ("baseline", "inject", "reset"))
  assert r"\begin{tabular}" in (out / "aggregate.tex").read_text()
  assert "reset raw (seeds)" in (out / "per_game.md").read_text()
  assert "variant reset: seed(s) [2] missing on 1 game(s): ['Qbert']" in (out / "gaps.txt").read_text()
  for name in ("aggregate_intervals.png", "sample_efficiency.png", "performance_profile.png"):
    data = (out / name).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name


def test_cli_on_workdirs_and_bad_input(tmp_path):
  df = _tidy(variants=("baseline",), games=("Pong", "Breakout"), seeds=(0, 1))
  for (variant, game, seed), rows in df.groupby(["variant", "game", "seed"]):
    _write_workdir(tmp_path / "workdirs" / "sweep" / f"{game}_{seed}", rows)
  out = tmp_path / "out"
  proc = _cli("--runs", str(tmp_path / "workdirs" / "*" / "*"), "--out", str(out), "--reps", "100",
              "--curve_reps", "20", "--profile_reps", "20")
  assert proc.returncode == 0, proc.stderr
  assert (out / "aggregate.md").exists() and not (out / "probability_of_improvement.md").exists()
  proc = _cli("--runs", str(tmp_path / "nope" / "*"), "--out", str(out))
  assert proc.returncode != 0 and "nope" in proc.stderr and "Traceback" not in proc.stderr
  bad = tmp_path / "bad.csv"
  df.assign(game="Zork").to_csv(bad, index=False)
  proc = _cli("--csv", str(bad), "--out", str(out))
  assert proc.returncode != 0 and "Zork" in proc.stderr and "Traceback" not in proc.stderr


def test_analysis_does_not_import_training_code():
  code = ("import sys, plasticity_rl.analysis.aggregate; "
          "print(sorted({m.split('.')[0] for m in sys.modules} & {'jax', 'flax', 'optax', 'envpool'}))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
  assert out.stdout.strip() == "[]"


def test_learning_curve_reads_metrics_as_the_recorder_does(tmp_path):
  """A torn last line (a run killed mid-write) is left out; a damaged line is an error naming it, not a traceback."""
  from plasticity_rl import workdir as workdir_lib
  from plasticity_rl.analysis import learning_curve
  rows = [{"frames": 1000, "kind": "episode", "episode_return": 2.0},
          {"frames": 2000, "kind": "event", "name": "injection"},
          {"frames": 3000, "kind": "episode", "episode_return": 4.0}]
  (tmp_path / "eval.csv").write_text("game,variant,seed,frames,episode_return,episode_frames\n"
                                     "Pong,baseline,0,3000,1.5,400\nPong,baseline,0,3000,2.5,500\n")
  metrics = tmp_path / "metrics.jsonl"
  metrics.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"frames": 4000, "kind": "epi')
  episodes, events = learning_curve._metrics(str(tmp_path))  # pylint: disable=protected-access
  np.testing.assert_array_equal(episodes, [[1000, 2.0], [3000, 4.0]])
  assert events == [(2000, "injection")]
  assert os.path.isfile(learning_curve.plot_learning_curve(str(tmp_path)))
  metrics.write_text(json.dumps(rows[0]) + "\n" + "\x00garbage\n" + json.dumps(rows[2]) + "\n")
  with pytest.raises(workdir_lib.WorkdirError, match="line 2"):
    learning_curve.plot_learning_curve(str(tmp_path))


def test_a_glob_skips_an_earlier_aggregates_csv_outputs(tmp_path):
  """An aggregate's --out under the --runs glob: its CSVs are results, skipped (and counted), not inputs."""
  from plasticity_rl.analysis import load as load_lib  # pylint: disable=g-import-not-at-top
  (tmp_path / "tidy.csv").write_text("game,variant,seed,frames,return\nPong,baseline,0,100,1.0\n")
  out = tmp_path / "results"
  out.mkdir()
  (out / "aggregate.csv").write_text("variant,games,runs,IQM\nbaseline,1,1,0.5\n")
  (out / load_lib.OUTPUTS_MARKER).write_text("")
  paths, skipped = load_lib.resolve_runs([str(tmp_path / "*.csv"), str(out / "*")])
  assert paths == [str(tmp_path / "tidy.csv")]
  assert str(out / "aggregate.csv") in skipped
