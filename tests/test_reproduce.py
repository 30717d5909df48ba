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
  result = subprocess.run([sys.executable, "-m", "plasticity_rl.reproduce", "--preset=drq_eps",
                           "--games=Boxing,Seaquest", f"--root={tmp_path}", "--report_only"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
  assert result.returncode == 0, result.stderr
  assert "| Boxing | 9.0 | 0 |" in result.stdout and "Not finished yet: Seaquest." in result.stdout
  saved = json.loads((tmp_path / "reproduction.json").read_text())
  assert [g["verdict"] for g in saved["games"]] == ["inside 10–90 %", "not run yet"]
  bad = subprocess.run([sys.executable, "-m", "plasticity_rl.reproduce", "--preset=drq_eps", "--games=Pitfall",
                        f"--root={tmp_path}", "--report_only"], capture_output=True, text=True, cwd=REPO, timeout=120)
  assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no published drq_eps runs" in bad.stderr


@pytest.mark.slow
def test_reproduce_smoke_end_to_end(tmp_path, run_env):
  """The whole command (sweep launcher, one tiny run of the preset, then the report) at smoke size."""
  result = subprocess.run([sys.executable, "-m", "plasticity_rl.reproduce", "--preset=drq_eps", "--games=Boxing",
                           f"--root={tmp_path}", "--parallel=1", "--smoke"], capture_output=True, text=True,
                          cwd=REPO, env=run_env, timeout=600)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  assert "| Boxing |" in result.stdout and "not run yet" not in result.stdout
  assert (tmp_path / "Boxing" / "drq_eps" / "seed_0" / "summary.json").exists()
  again = subprocess.run([sys.executable, "-m", "plasticity_rl.reproduce", "--preset=drq_eps", "--games=Boxing",
                          f"--root={tmp_path}", "--parallel=1", "--smoke"], capture_output=True, text=True,
                         cwd=REPO, env=run_env, timeout=300)
  assert again.returncode == 0 and "1 done already" in again.stdout  # A finished run is not run again.
