"""plasticity_rl.reproduce and the published data it compares with: the data match their source's summary, the
table and verdicts come out right on synthetic runs with known answers, and the command runs end to end."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from plasticity_rl import atari_games
from plasticity_rl import published
from plasticity_rl import reproduce

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _reproduce(*args: str, env=None, timeout: int = 120) -> subprocess.CompletedProcess:
  """`python -m plasticity_rl.reproduce ARGS` from the checkout, its output captured."""
  return subprocess.run([sys.executable, "-m", "plasticity_rl.reproduce", *args], capture_output=True, text=True,
                        cwd=REPO, env=env, timeout=timeout)


def test_published_drq_eps_runs_match_their_source_summary():
  runs = published.load("drq_eps_atari100k")
  assert sorted(runs) == sorted(atari_games.ATARI26)
  assert {len(v) for v in runs.values()} == {100}
  # Per-game medians and means as data/drq_eps_atari100k.SOURCE.md lists them (computed from the source JSON).
  for game, median, mean in (("Boxing", 8.46, 9.04), ("Breakout", 16.16, 19.76), ("Seaquest", 345.80, 352.28),
                             ("CrazyClimber", None, 21539.0), ("KungFuMaster", None, 11467.4)):
    if median is not None:
      assert np.median(runs[game]) == pytest.approx(median, abs=0.01), game
    assert np.mean(runs[game]) == pytest.approx(mean, abs=0.1), game
  assert (runs["Freeway"] == 0.0).sum() == 27  # A quirk of the source, kept (SOURCE.md).
  with pytest.raises(ValueError, match="unknown published dataset"):
    published.load("dqn_200m")


def write_run(root, game: str, seed: int, final_returns, frames: int = 400_000, preset: str = "drq_eps"):
  """A finished run's result files as the training loop writes them (an earlier evaluation too)."""
  d = os.path.join(root, game, preset, f"seed_{seed}")
  os.makedirs(d)
  with open(os.path.join(d, "eval.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["game", "variant", "seed", "frames", "episode_return", "episode_frames"])
    for r in (1000.0, -1000.0):  # An earlier evaluation that must not count.
      w.writerow([game, preset, seed, frames // 2, r, 100])
    for r in final_returns:
      w.writerow([game, preset, seed, frames, r, 100])
  with open(os.path.join(d, "summary.json"), "w") as f:
    json.dump({"frames": frames, "game": game, "seed": seed}, f)
  return d


def test_final_score_is_the_mean_of_the_final_evaluation(tmp_path):
  d = write_run(tmp_path, "Boxing", 0, [4.0, 6.0, 11.0])
  assert reproduce.final_score(d) == pytest.approx(7.0)
  assert reproduce.final_score(os.path.join(tmp_path, "Boxing", "drq_eps", "seed_9")) is None  # Not finished.


def test_table_verdicts_on_known_answers(tmp_path):
  ref = published.load("drq_eps_atari100k")
  p10, p90 = np.percentile(ref["Boxing"], [10, 90])
  write_run(tmp_path, "Boxing", 0, [(p10 + p90) / 2])  # Inside.
  write_run(tmp_path, "Boxing", 1, [p10 - 1.0])  # Below: the two seeds disagree -> mixed.
  write_run(tmp_path, "Breakout", 0, [0.5])  # Below.
  write_run(tmp_path, "Breakout", 1, [1.0])
  write_run(tmp_path, "Seaquest", 0, [10_000.0])  # Above.
  rows = {r.game: r for r in reproduce.table("drq_eps", reproduce.collect([tmp_path], "drq_eps",
                                                                          ["Boxing", "Breakout", "Seaquest", "Pong"],
                                                                          [0, 1]))}
  assert rows["Boxing"].verdict == "mixed the 10–90 % band"
  assert rows["Breakout"].verdict == "below the 10–90 % band"
  assert rows["Seaquest"].verdict == "above the 10–90 % band"
  assert rows["Pong"].verdict == "not run yet"
  assert rows["Boxing"].published_median == pytest.approx(np.median(ref["Boxing"]))
  assert rows["Boxing"].seeds == (0, 1) and rows["Seaquest"].seeds == (0,)
  assert (rows["Breakout"].random, rows["Breakout"].human) == (1.7, 30.5)


def test_aggregate_iqm_of_hns_for_us_and_for_the_published_runs(tmp_path):
  # Scores whose HNS is known: random + k·(human − random).
  scores = {}
  for game, k in (("Boxing", 0.5), ("Breakout", 0.1)):
    entry = atari_games.score_table()[game]
    scores[game] = entry.random + k * (entry.human - entry.random)
    for seed in (0, 1, 2):
      write_run(tmp_path, game, seed, [scores[game]])
  rows = reproduce.table("drq_eps", reproduce.collect([tmp_path], "drq_eps", ["Boxing", "Breakout"], [0, 1, 2]))
  agg = reproduce.aggregate("drq_eps", rows)
  # Six equal-per-game values: IQM (25 % trimmed mean of 0.5 ×3, 0.1 ×3) = mean of the middle three of six.
  assert agg["ours"]["iqm_hns"] == pytest.approx(np.mean(sorted([0.5] * 3 + [0.1] * 3)[1:5]), abs=1e-6)
  assert agg["ours"]["runs_per_game"] == 3 and agg["ours"]["games"] == ["Boxing", "Breakout"]
  assert agg["ours"]["ci_low"] <= agg["ours"]["iqm_hns"] <= agg["ours"]["ci_high"]
  ref = published.load("drq_eps_atari100k")
  hns = np.stack([reproduce.hns(ref[g], *(lambda e: (e.random, e.human))(atari_games.score_table()[g]))
                  for g in ("Boxing", "Breakout")], axis=1)
  from rliable import metrics  # pylint: disable=g-import-not-at-top
  assert agg["published"]["iqm_hns"] == pytest.approx(metrics.aggregate_iqm(hns))
  assert agg["published"]["ci_low"] < agg["published"]["iqm_hns"] < agg["published"]["ci_high"]
  text = reproduce.markdown("drq_eps", rows, agg)
  assert "| Boxing |" in text and "IQM of human-normalised score over 2 game(s)" in text


def test_one_run_per_game_reports_no_ci(tmp_path):
  write_run(tmp_path, "Boxing", 0, [9.0])
  rows = reproduce.table("drq_eps", reproduce.collect([tmp_path], "drq_eps", ["Boxing"], [0]))
  agg = reproduce.aggregate("drq_eps", rows)
  assert np.isnan(agg["ours"]["ci_low"])
  assert "no CI: one run per game" in reproduce.markdown("drq_eps", rows, agg)


def test_results_dirs_fill_in_runs_the_root_lacks(tmp_path):
  root, kept = tmp_path / "root", tmp_path / "kept"
  write_run(kept, "Boxing", 0, [3.0])
  write_run(kept, "Breakout", 0, [5.0])
  write_run(root, "Breakout", 0, [7.0])  # The root's own run wins.
  got = reproduce.collect([root, kept], "drq_eps", ["Boxing", "Breakout"], [0])
  assert got == {"Boxing": {0: 3.0}, "Breakout": {0: 7.0}}


def test_report_only_command_writes_the_table(tmp_path):
  write_run(tmp_path, "Boxing", 0, [9.0])
  result = _reproduce("--preset=drq_eps", "--games=Boxing,Seaquest", f"--root={tmp_path}", "--report_only")
  assert result.returncode == 0, result.stderr
  assert "| Boxing | 9.0 | 0 |" in result.stdout and "Not finished yet: Seaquest." in result.stdout
  saved = json.loads((tmp_path / "reproduction.json").read_text())
  assert [g["verdict"] for g in saved["games"]] == ["inside 10–90 %", "not run yet"]
  bad = _reproduce("--preset=drq_eps", "--games=Pitfall", f"--root={tmp_path}", "--report_only")
  assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no published drq_eps runs" in bad.stderr


@pytest.mark.slow
def test_reproduce_smoke_end_to_end(tmp_path, fake_run_env):
  """The whole command (sweep launcher, one tiny run of the preset, then the report) at smoke size, on the fake
  envpool (test_reproduce_dopamine_dqn_smoke_end_to_end is the real-envpool one)."""
  result = _reproduce("--preset=drq_eps", "--games=Boxing", f"--root={tmp_path}", "--parallel=1", "--smoke",
                      env=fake_run_env, timeout=600)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  assert "| Boxing |" in result.stdout and "not run yet" not in result.stdout
  assert (tmp_path / "Boxing" / "drq_eps" / "seed_0" / "summary.json").exists()
  again = _reproduce("--preset=drq_eps", "--games=Boxing", f"--root={tmp_path}", "--parallel=1", "--smoke",
                     env=fake_run_env, timeout=300)
  assert again.returncode == 0 and "1 done already" in again.stdout  # A finished run is not run again.


# The dopamine_dqn preset: learning curves against Dopamine's published per-iteration scores.


def test_published_dopamine_dqn_curves_match_their_source_summary():
  curves = published.load_curves("dopamine_dqn_atari")
  assert sorted(curves) == ["Breakout", "Pong"]
  assert {c.shape for c in curves.values()} == {(5, 200)}  # 5 runs × 200 iterations of 1M frames.
  # Final-iteration (199, 200M frames) and iteration-9 (10M) statistics as data/dopamine_dqn_atari.SOURCE.md lists them.
  for game, it, mean, low, high in (("Pong", 199, 19.5189, 19.2093, 19.6846), ("Breakout", 199, 199.3920, 189.7682,
                                                                                221.2313),
                                    ("Pong", 9, 1.1245, -2.8261, 9.1538), ("Breakout", 9, 51.9360, 48.7454, 56.9557),
                                    ("Pong", 0, -20.1911, -20.2738, -20.0833)):
    col = curves[game][:, it]
    assert (col.mean(), col.min(), col.max()) == pytest.approx((mean, low, high), abs=1e-4), (game, it)
  # The source's own digits, unchanged (SOURCE.md's per-run final scores; the first DQN record of each file).
  assert curves["Pong"][:, -1].tolist() == [19.209302325581394, 19.492424242424242, 19.666666666666668,
                                            19.684615384615384, 19.541353383458645]
  assert curves["Breakout"][:, -1].tolist() == [196.07236842105263, 189.7682119205298, 191.14743589743588,
                                                198.74074074074073, 221.2312925170068]
  assert curves["Pong"][0, 0] == -20.123552123552123 and curves["Breakout"][0, 0] == 1.785296574770259
  assert curves["Pong"].mean(axis=0).argmax() == 194 and curves["Breakout"].mean(axis=0).argmax() == 195
  with pytest.raises(ValueError, match="holds learning curves: load_curves"):
    published.load("dopamine_dqn_atari")
  with pytest.raises(ValueError, match="holds final scores: load"):
    published.load_curves("drq_eps_atari100k")


def write_curve_run(root, game: str, seed: int, evals, preset: str = "dopamine_dqn"):
  """A run's eval.csv (no summary.json: a curve is compared as far as it goes), evals = [(frames, [returns])]."""
  d = os.path.join(root, game, preset, f"seed_{seed}")
  os.makedirs(d)
  with open(os.path.join(d, "eval.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["game", "variant", "seed", "frames", "episode_return", "episode_frames"])
    for frames, returns in evals:
      for r in returns:
        w.writerow([game, preset, seed, frames, r, 100])
  return d


def test_iteration_of_maps_training_frames_to_dopamine_iterations(tmp_path):
  m = 1_000_000
  assert [reproduce.iteration_of(f, m) for f in (1_000_000, 1_000_032, 995_000, 10_000_000, 200_000_000)] == \
      [0, 0, 0, 9, 199]
  assert [reproduce.iteration_of(f, m) for f in (0, 2_000, 500_000, 1_500_000, 1_020_000)] == [None] * 5
  # A run's curve: one (frames, mean over that evaluation's episodes) per evaluation, by frames.
  d = write_curve_run(tmp_path, "Pong", 0, [(2 * m, [1.0, 2.0, 6.0]), (m, [-21.0])])
  assert reproduce.eval_curve(d) == [(m, -21.0), (2 * m, 3.0)]
  assert reproduce.eval_curve(str(tmp_path / "Pong" / "dopamine_dqn" / "seed_1")) is None  # Not started.


def test_curve_table_and_verdicts_on_known_answers(tmp_path):
  band = published.load_curves("dopamine_dqn_atari")
  pong, breakout = band["Pong"], band["Breakout"]
  m = 1_000_000
  # Pong seed 0: inside at every iteration it reached (the published mean), with an evaluation between iterations.
  write_curve_run(tmp_path, "Pong", 0, [((i + 1) * m + 32, [pong[:, i].mean()] * 3) for i in range(3)] +
                  [(3_500_000, [0.0])])
  # Pong seed 1: below at iteration 0, above at iteration 1 (seed 0 inside there: mixed), alone at iteration 3.
  write_curve_run(tmp_path, "Pong", 1, [(1 * m, [pong[:, 0].min() - 1]), (2 * m, [pong[:, 1].max() + 1, 21.0]),
                                        (4 * m, [pong[:, 3].max() + 0.5])])
  # Breakout seed 0: the episode mean is the score (two episodes around the band's max at iteration 9 -> above).
  write_curve_run(tmp_path, "Breakout", 0, [(10 * m, [breakout[:, 9].max() + 10, breakout[:, 9].max() + 20])])
  rows = {c.game: c for c in reproduce.curve_table("dopamine_dqn", reproduce.collect_curves(
      [tmp_path], "dopamine_dqn", ["Pong", "Breakout"], [0, 1]))}
  p = rows["Pong"]
  assert [q.iteration for q in p.points] == [0, 1, 2, 3] and [q.frames for q in p.points] == [m, 2 * m, 3 * m, 4 * m]
  assert [q.seeds for q in p.points] == [(0, 1), (0, 1), (0,), (1,)]
  assert [q.verdict for q in p.points] == ["mixed the min–max band", "mixed the min–max band",
                                           "inside the min–max band", "above the min–max band"]
  assert p.points[1].scores[1] == pytest.approx((pong[:, 1].max() + 1 + 21.0) / 2)
  assert (p.points[2].published_min, p.points[2].published_mean, p.points[2].published_max) == pytest.approx(
      (pong[:, 2].min(), pong[:, 2].mean(), pong[:, 2].max()))
  assert p.verdict == "above the min–max band at iteration 3"  # The last evaluated iteration decides.
  assert p.off_iteration == (3_500_000,) and p.seeds == (0, 1) and p.published_runs == 5
  b = rows["Breakout"]
  assert [q.iteration for q in b.points] == [9] and b.verdict == "above the min–max band at iteration 9"
  assert b.points[0].scores == pytest.approx((breakout[:, 9].max() + 15,))
  # Nothing run yet; runs with evaluations only between iterations (the :smoke scale evaluates at 2k and 4k frames).
  write_curve_run(tmp_path, "Breakout", 1, [(2_000, [1.0]), (4_000, [2.0])])
  none = reproduce.curve_table("dopamine_dqn", reproduce.collect_curves([tmp_path], "dopamine_dqn", ["Pong",
                                                                                                     "Breakout"], [2]))
  assert [c.verdict for c in none] == ["not run yet", "not run yet"]
  smoke = reproduce.curve_table("dopamine_dqn", reproduce.collect_curves([tmp_path], "dopamine_dqn", ["Breakout"],
                                                                         [1]))[0]
  assert smoke.verdict == "no evaluation at a published iteration yet" and smoke.off_iteration == (2_000, 4_000)
  with pytest.raises(reproduce.ReproduceError, match="no published dopamine_dqn curves"):
    reproduce.curve_table("dopamine_dqn", {"Seaquest": {}})
  text = reproduce.curve_markdown("dopamine_dqn", list(rows.values()))
  assert "| Pong | 3 | 4M |" in text and "above the min–max band at iteration 3 |" in text
  assert "| 2 | 3M |" in text
  assert "Not compared: 1 evaluation frame count(s) at no published iteration (3,500,000)" in text


def test_long_curves_show_an_even_selection_of_iterations():
  points = [reproduce.CurvePoint(i, (i + 1) * 1_000_000, (1.0,), (0,), 0.0, 1.0, 2.0) for i in range(200)]
  shown = reproduce.shown_points(points)
  assert len(shown) == reproduce.MAX_TABLE_ROWS and shown[0].iteration == 0 and shown[-1].iteration == 199
  assert reproduce.shown_points(points[:10]) == points[:10]


def test_curve_report_command_writes_tables_figures_and_json(tmp_path):
  band = published.load_curves("dopamine_dqn_atari")
  write_curve_run(tmp_path, "Pong", 0, [((i + 1) * 1_000_000, [band["Pong"][:, i].mean()]) for i in range(10)])
  result = _reproduce("--preset=dopamine_dqn", "--games=pong,Breakout", f"--root={tmp_path}", "--report_only")
  assert result.returncode == 0, result.stderr
  assert "| Pong | 9 | 10M |" in result.stdout and "inside the min–max band at iteration 9" in result.stdout
  assert "Not run yet: Breakout." in result.stdout
  for game in ("Pong", "Breakout"):  # A figure per game, next to reproduction.md.
    assert (tmp_path / f"reproduction_{game}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert "![Pong: our curve over the published band](reproduction_Pong.png)" in (
      tmp_path / "reproduction.md").read_text()
  saved = json.loads((tmp_path / "reproduction.json").read_text())
  assert [g["verdict"] for g in saved["games"]] == ["inside the min–max band at iteration 9", "not run yet"]
  assert saved["frames_per_iteration"] == 1_000_000 and len(saved["games"][0]["points"]) == 10
  assert saved["games"][0]["points"][9]["published_max"] == pytest.approx(band["Pong"][:, 9].max())
  shorter = _reproduce("--preset=dopamine_dqn", "--games=Pong", f"--root={tmp_path}", "--report_only", "--override",
                       "total_frames=10000000")
  assert shorter.returncode == 0, shorter.stderr
  assert "run for fewer frames" in shorter.stdout and "not a reproduction" not in shorter.stdout
  bad = _reproduce("--preset=dopamine_dqn", "--games=Seaquest", f"--root={tmp_path}", "--report_only")
  assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no published dopamine_dqn curves" in bad.stderr


@pytest.mark.slow
def test_reproduce_dopamine_dqn_smoke_end_to_end(tmp_path, run_env):
  """The GPU recipe's command at the :smoke scale: one tiny Pong run through the sweep launcher, then the report."""
  result = _reproduce("--preset=dopamine_dqn", "--games=Pong", f"--root={tmp_path}", "--parallel=1", "--smoke",
                      env=run_env, timeout=600)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  assert (tmp_path / "Pong" / "dopamine_dqn" / "seed_0" / "summary.json").exists()
  # The smoke run evaluates at 2k and 4k frames: no Dopamine iteration (1M frames) yet, and the report says so.
  assert "| Pong |" in result.stdout and "no evaluation at a published iteration yet" in result.stdout
  assert "The :smoke scale" in result.stdout
  assert (tmp_path / "reproduction.md").exists() and (tmp_path / "reproduction_Pong.png").exists()
  saved = json.loads((tmp_path / "reproduction.json").read_text())
  assert saved["games"][0]["ours"]["0"] and saved["games"][0]["not_compared_frames"]


def test_keep_copies_finished_runs_result_files_and_reads_them_back(tmp_path):
  root, keep = tmp_path / "root", tmp_path / "docs"
  write_run(root, "Boxing", 0, [9.0])
  os.makedirs(root / "Breakout" / "drq_eps" / "seed_0")  # Unfinished: not kept.
  assert reproduce.keep_results(str(root), str(keep), "drq_eps", ["Boxing", "Breakout"], [0]) == [
      os.path.join("Boxing", "drq_eps", "seed_0")]
  assert sorted(os.listdir(keep / "Boxing" / "drq_eps" / "seed_0")) == ["eval.csv", "summary.json"]
  assert reproduce.collect([str(tmp_path / "gone"), str(keep)], "drq_eps", ["Boxing"], [0]) == {"Boxing": {0: 9.0}}
