"""Tests of the analysis's honest statistics, per-game paired benefit, learning-curve grid and file outputs.

Synthetic result sets with known answers: every number checked here follows from the rows written.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from plasticity_rl import atari_games
from plasticity_rl.analysis import aggregate
from plasticity_rl.analysis import curves
from plasticity_rl.analysis import load
from plasticity_rl.analysis import paired
from plasticity_rl.analysis import plots
from plasticity_rl.analysis import stats
from plasticity_rl.analysis import tables
from plasticity_rl.analysis.load import AnalysisError

SMALL = dict(reps=300, poi_reps=30, curve_reps=200, profile_reps=30)
RANDOM = {g: atari_games.score_table()[g].random for g in ("Pong", "Breakout", "Qbert")}
HUMAN = {g: atari_games.score_table()[g].human for g in ("Pong", "Breakout", "Qbert")}


def _final(scores: dict) -> pd.DataFrame:
  """{(variant, game): [score of seed 0, seed 1, …] (None: not run)} -> final-score rows."""
  rows = [dict(variant=v, game=g, seed=s, score=x) for (v, g), xs in scores.items() for s, x in enumerate(xs)
          if x is not None]
  return pd.DataFrame(rows)


def _episodes(scores: dict, frames=(0, 500_000, 1_000_000)) -> pd.DataFrame:
  """Evaluation rows whose last evaluation is `scores` (earlier ones: a fraction of it); one episode each."""
  rows = []
  for (variant, game), xs in scores.items():
    for seed, x in enumerate(xs):
      for i, f in enumerate(frames):
        value = RANDOM[game] + (x - RANDOM[game]) * (i + 1) / len(frames)
        rows.append(dict(variant=variant, game=game, seed=seed, frames=f, episode_return=value))
  return pd.DataFrame(rows)


def _results(df: pd.DataFrame) -> load.Results:
  return load.Results(df.rename(columns={"episode_return": "return"}).assign(source="test"), [])


# The <3-runs flag.


def test_few_runs_and_size_label():
  assert [stats.few(n) for n in (1, 2, 3, 10)] == [True, True, False, False]
  assert stats.size_label(4, 2) == "4 games × 2 runs†" and stats.size_label(1, 3) == "1 game × 3 runs"


@pytest.mark.parametrize("seeds, flagged", [(1, True), (2, True), (3, False)])
def test_every_table_states_games_and_runs_and_flags_a_ci_from_few_runs(seeds, flagged, tmp_path):
  scores = {(v, g): [RANDOM[g] + (1 + k) * (s + 1) for s in range(seeds)]
            for k, v in enumerate(("baseline", "inject")) for g in ("Pong", "Breakout")}
  analysis = aggregate.analyze(_results(_episodes(scores)), paired=["inject:baseline"], **SMALL)
  assert list(analysis.aggregate["games"]) == [2, 2] and list(analysis.aggregate["runs"]) == [seeds, seeds]
  assert list(analysis.aggregate["few_runs"]) == [flagged] * 2
  texts = [tables.aggregate_markdown(analysis.aggregate), tables.improvement_markdown(analysis.improvement),
           tables.paired_markdown(analysis.paired, analysis.improvement)]
  for text in texts:
    assert (stats.FEW_RUNS_NOTE in text) is flagged, text
    assert (f"| {seeds}† |" in text) is flagged, text
  assert (r"\dag{}" in tables.aggregate_latex(analysis.aggregate)) is flagged
  if seeds == 1:  # rliable's CI of one run is zero-width: shown, but never without the flag.
    row = analysis.aggregate.iloc[0]
    assert row["IQM lo"] == row["IQM hi"] == row["IQM"]
    assert analysis.paired["delta_lo"].isna().all() and "[no CI: 1 seed]" in texts[2]
    assert analysis.grid["lo"].isna().all()
    aggregate.write_outputs(analysis, str(tmp_path))  # Every file and figure, from one seed per game.
    assert (tmp_path / "paired_inject_vs_baseline.pdf").exists() and (tmp_path / "learning_curves.pdf").exists()


# Per-game paired benefit.


def test_paired_per_game_known_answers():
  pong, breakout, qbert = RANDOM["Pong"], RANDOM["Breakout"], RANDOM["Qbert"]
  final = _final({
      # Pong: inject beats baseline by 5, 6, 4 (Δ = 5); baseline sits 10 above random; seed 3 only in inject.
      ("inject", "Pong"): [pong + 15, pong + 16, pong + 14, pong + 50],
      ("baseline", "Pong"): [pong + 10, pong + 10, pong + 10],
      # Breakout: inject loses everything baseline gained over random (−100 %), on seeds whose levels differ a lot.
      ("inject", "Breakout"): [breakout, breakout, breakout],
      ("baseline", "Breakout"): [breakout + 10, breakout + 10, breakout + 10],
      # Qbert: one common seed only.
      ("inject", "Qbert"): [qbert + 400, None, None],
      ("baseline", "Qbert"): [qbert + 200, None, None],
  })
  table, notes = paired.per_game(final, "inject", "baseline", reps=2000, seed=0)
  assert list(table["game"]) == ["Qbert", "Pong", "Breakout"]  # Sorted by relative improvement: +100 %, +50 %, −100 %.
  rows = table.set_index("game")
  assert rows.loc["Pong", "seeds"] == 3 and rows.loc["Pong", "delta"] == pytest.approx(5.0)
  assert rows.loc["Pong", "relative"] == pytest.approx(50.0)
  assert 4.0 - 1e-9 <= rows.loc["Pong", "delta_lo"] < 5.0 < rows.loc["Pong", "delta_hi"] <= 6.0 + 1e-9
  assert rows.loc["Pong", "delta_hns"] == pytest.approx(5.0 / (HUMAN["Pong"] - pong))
  assert rows.loc["Breakout", "relative"] == pytest.approx(-100.0)
  assert rows.loc["Breakout", "delta_lo"] == rows.loc["Breakout", "delta_hi"] == pytest.approx(-10.0)
  assert rows.loc["Qbert", "relative"] == pytest.approx(100.0) and np.isnan(rows.loc["Qbert", "delta_lo"])
  assert list(table["few_runs"]) == [True, False, False]
  assert list(table["verdict"]) == ["inconclusive", "better", "worse"]  # Qbert: one seed, no CI.
  assert notes == ["paired inject vs baseline, Pong: seed(s) [3] run by only one of them, left out (a pair needs "
                   "the same seed in both)"]


def test_a_verdict_needs_a_ci_excluding_zero_over_three_seeds():
  pong = RANDOM["Pong"]
  mixed = _final({("inject", "Pong"): [pong + 5, pong - 5, pong + 1], ("baseline", "Pong"): [pong] * 3})
  assert paired.per_game(mixed, "inject", "baseline", reps=1000, seed=0)[0].iloc[0]["verdict"] == "inconclusive"
  two = _final({("inject", "Pong"): [pong + 5, pong + 6], ("baseline", "Pong"): [pong, pong]})
  row = paired.per_game(two, "inject", "baseline", reps=1000, seed=0)[0].iloc[0]
  assert row["delta_lo"] > 0 and row["verdict"] == "inconclusive"  # A CI from 2 seeds is no real interval.
  assert paired.verdict(0.5, 2.0, 3) == "better" and paired.verdict(-2.0, -0.1, 5) == "worse"
  assert paired.verdict(-0.1, 2.0, 10) == "inconclusive"


def test_paired_bootstrap_keeps_the_seeds_paired():
  """Seeds differ a lot, inject is always its seed's baseline + 2: the paired CI of Δ is [2, 2]; an unpaired
  bootstrap would span hundreds."""
  pong = RANDOM["Pong"]
  base = [pong + 1, pong + 20, pong + 5, pong + 30]
  final = _final({("inject", "Pong"): [b + 2 for b in base], ("baseline", "Pong"): base})
  row = paired.per_game(final, "inject", "baseline", reps=1000, seed=3)[0].iloc[0]
  assert row["delta_lo"] == pytest.approx(2.0) and row["delta_hi"] == pytest.approx(2.0)
  assert row["relative_lo"] < row["relative"] < row["relative_hi"]  # The control's level does vary.


def test_paired_bootstrap_equals_resampling_seeds_by_hand():
  final = _final({("x", "Pong"): [1.0, 4.0, -2.0, 7.0, 0.5], ("y", "Pong"): [0.0, 1.0, -3.0, 2.0, 1.0]})
  row = paired.per_game(final, "x", "y", reps=500, seed=11)[0].iloc[0]
  x, y = np.array([1.0, 4.0, -2.0, 7.0, 0.5]), np.array([0.0, 1.0, -3.0, 2.0, 1.0])
  index = np.random.default_rng(11).integers(0, 5, size=(500, 5))
  boot = x[index].mean(axis=1) - y[index].mean(axis=1)
  np.testing.assert_allclose([row["delta_lo"], row["delta_hi"]], np.percentile(boot, [2.5, 97.5]))
  relative = 100 * boot / np.abs(y[index].mean(axis=1) - RANDOM["Pong"])
  np.testing.assert_allclose([row["relative_lo"], row["relative_hi"]], np.percentile(relative, [2.5, 97.5]))


@pytest.mark.parametrize("spec, message", [
    ("inject", "not TREATED:CONTROL"), ("inject:", "not TREATED:CONTROL"), ("a:b:c", "not TREATED:CONTROL"),
    ("inject:nope", r"unknown variant\(s\) \['nope'\]"), ("inject:inject", "paired with itself")])
def test_bad_paired_spec(spec, message):
  with pytest.raises(AnalysisError, match=message):
    paired.parse_pairs([spec], ["baseline", "inject"])


def test_paired_adds_probability_of_improvement_with_rliable():
  scores = {("baseline", g): [RANDOM[g] + s for s in (1, 2, 3)] for g in ("Pong", "Breakout")}
  scores.update({("inject", g): [RANDOM[g] + s + 10 for s in (1, 2, 3)] for g in ("Pong", "Breakout")})
  scores.update({("reset", g): [RANDOM[g] + s for s in (1, 2, 3)] for g in ("Pong", "Breakout")})
  analysis = aggregate.analyze(_results(_episodes(scores)), compare=["baseline", "reset"],
                               paired=["inject:baseline"], **SMALL)
  pairs = list(zip(analysis.improvement["x"], analysis.improvement["y"]))
  assert pairs == [("reset", "baseline"), ("inject", "baseline")]
  poi = analysis.improvement.set_index(["x", "y"]).loc[("inject", "baseline")]
  assert poi["P(x > y)"] == 1.0 and poi["lo"] == 1.0  # Every inject run beats every baseline run on both games.
  assert set(analysis.paired["x"]) == {"inject"} and list(analysis.paired["delta"]) == pytest.approx([10.0, 10.0])
  assert "P(inject > baseline) = 1.000 [1.000, 1.000] over 2 games" in tables.paired_markdown(
      analysis.paired, analysis.improvement)


# The learning-curve grid.


def test_per_game_curves_mean_ci_and_seed_counts():
  curve = pd.DataFrame({"variant": "v", "game": "Pong", "seed": [0, 1, 2, 0, 1, 2, 0],
                        "frames": [0, 0, 0, 100, 100, 100, 200], "return": [1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 9.0]})
  table = curves.per_game_curves(curve, reps=500, seed=0).set_index("frames")
  assert list(table["seeds"]) == [3, 3, 1] and list(table["few_runs"]) == [False, False, True]
  assert list(table["mean"]) == [2.0, 5.0, 9.0]
  assert 1.0 <= table.loc[0, "lo"] < 2.0 < table.loc[0, "hi"] <= 3.0
  assert table.loc[100, "lo"] == table.loc[100, "hi"] == 5.0
  assert np.isnan(table.loc[200, "lo"]) and np.isnan(table.loc[200, "hi"])  # One seed: no band.


def _workdir(path, variant, game, seed, returns, events=()):
  os.makedirs(path, exist_ok=True)
  pd.DataFrame({"game": game, "variant": variant, "seed": seed, "frames": [f for f, _ in returns],
                "episode_return": [r for _, r in returns], "episode_frames": 100}).to_csv(
                    os.path.join(path, "eval.csv"), index=False)
  with open(os.path.join(path, "metrics.jsonl"), "w") as f:
    for frames, name in events:
      f.write(json.dumps({"frames": frames, "kind": "event", "name": name}) + "\n")
    f.write(json.dumps({"frames": 10, "kind": "train", "loss": 0.1}) + "\n")


def test_events_grid_labels_clear_of_the_legend_and_frames_in_millions(tmp_path, monkeypatch):
  returns = [(0, -20.0), (1_000_000, -10.0), (2_000_000, 0.0)]
  for seed in range(3):
    _workdir(tmp_path / f"inject_{seed}", "inject", "Pong", seed, returns, [(1_000_000, "injection")])
    _workdir(tmp_path / f"base_{seed}", "baseline", "Pong", seed, returns)
  _workdir(tmp_path / "inject_b", "inject", "Breakout", 0, [(0, 1.0), (2_000_000, 5.0)], [(500_000, "reset")])
  results = load.load_results(runs=[str(tmp_path / "*")])
  events = curves.events(results.episodes)
  assert sorted(map(tuple, events[["variant", "game", "frames", "name"]].drop_duplicates().to_numpy())) == [
      ("inject", "Breakout", 500_000, "reset"), ("inject", "Pong", 1_000_000, "injection")]
  assert len(events) == 4  # One injection per inject seed on Pong, one reset.
  analysis = aggregate.analyze(results, **SMALL)
  figures = []
  monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
  plots.learning_curve_grid(analysis.grid, analysis.events, str(tmp_path / "grid.png"))
  (fig,) = figures
  fig.canvas.draw()
  renderer = fig.canvas.get_renderer()
  legend = fig.legends[0].get_window_extent(renderer)
  labels = [t for ax in fig.axes for t in ax.texts]
  assert sorted(t.get_text() for t in labels) == ["injection @ 1M", "reset @ 0.5M"]
  for text in labels:
    assert not legend.overlaps(text.get_window_extent(renderer)), text.get_text()
  for ax in fig.axes:
    if ax.get_visible() and ax.lines:
      assert ax.get_xlabel() == "environment frames (millions)"
      assert max(max(line.get_xdata()) for line in ax.lines) == pytest.approx(2.0)
  titles = sorted(ax.get_title() for ax in fig.axes if ax.get_visible())
  assert titles == ["Breakout · 1 seed†", "Pong · 3 seeds"]


# Files: every table and curve as CSV and JSON, every figure as PNG and PDF.


def test_write_outputs_csv_json_pdf(tmp_path):
  scores = {(v, g): [RANDOM[g] + (1 + k) * (s + 1) for s in range(3)]
            for k, v in enumerate(("baseline", "inject")) for g in ("Pong", "Breakout")}
  analysis = aggregate.analyze(_results(_episodes(scores)), paired=["inject:baseline"], **SMALL)
  paths = aggregate.write_outputs(analysis, str(tmp_path))
  for stem in ("aggregate", "per_game", "final_scores", "sample_efficiency", "performance_profile",
               "learning_curves", "events", "probability_of_improvement", "paired"):
    assert str(tmp_path / f"{stem}.csv") in paths and str(tmp_path / f"{stem}.json") in paths, stem
  for stem in ("aggregate_intervals", "sample_efficiency", "performance_profile", "learning_curves",
               "paired_inject_vs_baseline"):
    assert (tmp_path / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", stem
    assert (tmp_path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-", stem
  csv = pd.read_csv(tmp_path / "aggregate.csv").set_index("variant")
  row = analysis.aggregate.set_index("variant")
  np.testing.assert_allclose(csv[["IQM", "IQM lo", "IQM hi", "runs", "games"]].to_numpy(dtype=float),
                             row[["IQM", "IQM lo", "IQM hi", "runs", "games"]].to_numpy(dtype=float))
  with open(tmp_path / "paired.json") as f:
    records = json.load(f)
  assert [r["game"] for r in records] == list(analysis.paired["game"])
  assert [r["delta"] for r in records] == pytest.approx([2.0, 2.0])  # Inject: 2, 4, 6 above random; baseline 1, 2, 3.
  per_game = pd.read_csv(tmp_path / "per_game.csv").set_index(["game", "variant"])
  assert per_game.loc[("Pong", "inject"), "seeds"] == 3
  assert per_game.loc[("Pong", "inject"), "score"] == pytest.approx(RANDOM["Pong"] + 4.0)  # (2 + 4 + 6) / 3.
  grid = pd.read_csv(tmp_path / "learning_curves.csv")
  assert len(grid) == 2 * 2 * 3 and set(grid["seeds"]) == {3}
  efficiency = pd.read_csv(tmp_path / "sample_efficiency.csv")
  assert list(efficiency["frames"].unique()) == [0, 500_000, 1_000_000] and set(efficiency["runs"]) == {3}


def _cli(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "plasticity_rl.analysis.aggregate", *args],
                        capture_output=True, text=True, timeout=120, check=False)


def test_cli_paired(tmp_path):
  scores = {(v, g): [RANDOM[g] + (1 + 2 * k) * (s + 1) for s in range(3)]
            for k, v in enumerate(("baseline", "inject@1M")) for g in ("Pong", "Breakout")}
  path = tmp_path / "results.csv"
  _episodes(scores).to_csv(path, index=False)
  out = tmp_path / "out"
  small = ["--reps=200", "--poi_reps=20", "--curve_reps=20", "--profile_reps=20"]
  proc = _cli(f"--csv={path}", f"--out={out}", "--paired=inject@1M:baseline", *small)
  assert proc.returncode == 0, proc.stderr
  assert "## Per-game benefit: inject@1M vs baseline" in proc.stdout and "P(inject@1M > baseline)" in proc.stdout
  assert "2 games, 3 paired seeds per game" in (out / "paired.md").read_text()
  assert (out / "paired_inject@1M_vs_baseline.pdf").read_bytes()[:5] == b"%PDF-"
  bad = _cli(f"--csv={path}", f"--out={out}", "--paired=inject@1M", *small)
  assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
  assert "not TREATED:CONTROL" in bad.stderr


def test_plot_metrics_writes_the_pdf_too_with_frames_in_millions(tmp_path, monkeypatch):
  from plasticity_rl import plot_metrics  # pylint: disable=g-import-not-at-top
  run = tmp_path / "run"
  run.mkdir()
  rows = [{"frames": 500_000, "kind": "plasticity", "srank": 3.0}, {"frames": 1_000_000, "kind": "event",
                                                                    "name": "injection"},
          {"frames": 2_000_000, "kind": "plasticity", "srank": 5.0}]
  (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  out = tmp_path / "m.png"
  saved = []
  close = plot_metrics.plt.close
  monkeypatch.setattr(plot_metrics.plt, "close", lambda fig: saved.append(fig))
  assert plot_metrics.plot([str(run)], ["srank"], str(out)) == str(out)
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "m.pdf").read_bytes()[:5] == b"%PDF-"
  ax = saved[0].axes[0]
  assert list(ax.lines[0].get_xdata()) == [0.5, 2.0] and ax.get_xlabel() == "environment frames (millions)"
  close(saved[0])


def test_diagnosis_plot_writes_the_pdf_too(tmp_path):
  from plasticity_rl.analysis import diagnosis  # pylint: disable=g-import-not-at-top
  logs = lambda evals: diagnosis.Logs(eval_return=evals, train_return=[], loss=[(f, 0.1) for f, _ in evals],
                                      events=[], run=None)
  branches = {"continue": logs([(3000, 1.0)]), "inject": logs([(3000, 2.0)])}
  report = {"branch_frames": 2000, "window_frames": 1000, "end_frames": 3000, "verdict": "inconclusive: …",
            "source": {"game": "Pong", "variant": "baseline", "seed": 0}}
  diagnosis.plot(logs([(2000, 1.0)]), branches, report, str(tmp_path / "diagnosis.png"))
  assert (tmp_path / "diagnosis.pdf").read_bytes()[:5] == b"%PDF-"


def test_read_events_leaves_out_a_torn_line_and_names_a_damaged_one(tmp_path):
  path = tmp_path / "metrics.jsonl"
  rows = [{"frames": 5, "kind": "train", "loss": 1.0, "note": "event"}, {"frames": 7, "kind": "event", "name": "reset"}]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"frames": 9, "kind": "event", "na')
  assert curves.read_events(str(path)) == [(7, "reset")]  # A train row mentioning "event" is not one.
  path.write_text(json.dumps(rows[1]) + "\n" + '{"kind": "event"}\n')
  with pytest.raises(AnalysisError, match="metrics.jsonl line 2"):
    curves.read_events(str(path))
