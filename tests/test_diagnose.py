"""plasticity-rl-diagnose: a smoke source run branched into "continue" and "inject", the report, errors."""

import json
import pathlib
import subprocess
import sys

import pytest

from plasticity_rl import recorder
from plasticity_rl import testing
from plasticity_rl.analysis import diagnosis

REPO = pathlib.Path(__file__).resolve().parents[1]
DIAGNOSE = [sys.executable, "-m", "plasticity_rl.diagnose"]
SOURCE_FRAMES = 2_000  # configs/dqn.py:smoke stops here: 125 loop steps of 4 envs × 4 frames.
STEP_FRAMES = 16  # One loop step of the smoke config.


def _diagnose(*args: str, env=None) -> subprocess.CompletedProcess:
  return subprocess.run([*DIAGNOSE, *args], capture_output=True, text=True, cwd=REPO, timeout=900, env=env)


def _load_config_file(name: str):
  return testing.configs_module(name)


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory, run_env):
  """A 2,000-frame smoke run, then the diagnosis with 1,000 extra frames (log every step: the first
  update after the branch point is its own "train" row). Real envpool (the README's diagnosis runs on the fake)."""
  root = tmp_path_factory.mktemp("diagnose")
  source, out = root / "source", root / "diagnosis"
  subprocess.run([sys.executable, "-m", "plasticity_rl.main", "--config=configs/dqn.py:smoke", f"--workdir={source}",
                  f"--config.total_frames={SOURCE_FRAMES}", "--config.log.tensorboard=false"],
                 check=True, capture_output=True, cwd=REPO, timeout=600, env=run_env)
  result = _diagnose(f"--source={source}", f"--workdir={out}", "--extra_frames=1000",
                     f"--config.log.period_frames={STEP_FRAMES}", env=run_env)
  assert result.returncode == 0, result.stderr[-4000:]
  return source, out, result


def _events(workdir, name="injection"):
  return [r for r in recorder.read_metrics(str(workdir), "event") if r.get("name") == name]


@pytest.mark.slow
def test_both_branches_run_from_the_checkpoint(diagnosed):
  source, out, _ = diagnosed
  end = SOURCE_FRAMES + 1008  # 1,000 extra frames, rounded up to whole loop steps.
  for branch in diagnosis.BRANCHES:
    with open(out / branch / "summary.json") as f:
      assert json.load(f)["frames"] == end
    run = recorder.read_metrics(str(out / branch), "run")[0]
    assert run["reincarnated_from"] == str(source / "checkpoints" / str(SOURCE_FRAMES))
    assert run["reincarnated_frames"] == SOURCE_FRAMES and run["reincarnate_load"] == "all"


@pytest.mark.slow
def test_injection_only_in_the_inject_branch_at_the_first_step(diagnosed):
  _, out, _ = diagnosed
  (event,) = _events(out / "inject")
  assert event["frames"] == SOURCE_FRAMES + STEP_FRAMES
  assert event["max_abs_dq"] <= 1e-5 and event["max_abs_dq_target"] <= 1e-5
  assert event["params_frozen"] > 0
  assert _events(out / "continue") == []


@pytest.mark.slow
def test_branches_start_from_identical_agents(diagnosed):
  """The first step's update (before the injection) sees the same params, optimizer state and replay
  sample in both branches, so its logged loss, Q and gradient norm are equal; the next ones differ."""
  _, out, _ = diagnosed
  first = {b: recorder.read_metrics(str(out / b), "train")[:2] for b in diagnosis.BRANCHES}
  cont, inject = first["continue"][0], first["inject"][0]
  assert cont["frames"] == inject["frames"] == SOURCE_FRAMES + STEP_FRAMES
  for key in ("updates", "loss", "q_mean", "q_max", "grad_norm"):
    assert cont[key] == inject[key], key
  assert any(first["continue"][1][k] != first["inject"][1][k] for k in ("loss", "q_mean", "grad_norm"))


@pytest.mark.slow
def test_report_files_and_table(diagnosed):
  _, out, result = diagnosed
  with open(out / "diagnosis.json") as f:
    report = json.load(f)
  assert report["branch_frames"] == SOURCE_FRAMES and report["end_frames"] == SOURCE_FRAMES + 1008
  assert report["injection"] == {"expected_frames": SOURCE_FRAMES + STEP_FRAMES, "frames": SOURCE_FRAMES + STEP_FRAMES,
                                 "count": 1, "max_abs_dq": pytest.approx(0.0, abs=1e-5),
                                 "max_abs_dq_target": pytest.approx(0.0, abs=1e-5), "ok": True}
  source_eval = {int(r["frames"]) for r in recorder.read_eval(str(out.parent / "source"))}
  assert source_eval == {SOURCE_FRAMES}
  for branch in diagnosis.BRANCHES:
    stats = report["branches"][branch]
    for metric in ("eval_return", "loss"):
      s = stats[metric]
      assert s["before"] is not None and s["after"] is not None, (branch, metric)
      assert s["n_before"] >= 1 and s["n_after"] >= 1
      assert s["delta"] == pytest.approx(s["after"] - s["before"])
    assert stats["eval_return"]["n_after"] == 1  # The branch's final evaluation.
  befores = {b: report["branches"][b]["eval_return"]["before"] for b in diagnosis.BRANCHES}
  assert befores["continue"] == befores["inject"]
  # One evaluation after the branch point in each branch: no CI, so no verdict (not a Δ = +0.00 one).
  assert report["difference"]["n"] == 1 and report["difference"]["lo"] is None
  assert report["plasticity_loss"] is None and report["verdict"].startswith("inconclusive: ")
  assert "a CI needs at least 3" in report["verdict"]
  assert (out / "diagnosis.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  text = (out / "diagnosis.md").read_text()
  assert "| eval return |" in text and "| loss (train rows) |" in text and report["verdict"] in text
  assert "| metric | before: source" in result.stdout and report["verdict"] in result.stdout


@pytest.mark.slow
def test_rerun_skips_finished_branches(diagnosed):
  source, out, _ = diagnosed
  summaries = {b: (out / b / "summary.json").read_text() for b in diagnosis.BRANCHES}
  again = _diagnose(f"--source={source}", f"--workdir={out}", "--extra_frames=1000",
                    f"--config.log.period_frames={STEP_FRAMES}")
  assert again.returncode == 0, again.stderr[-2000:]
  assert "2 done already (skipped), 0 to run" in again.stderr
  assert {b: (out / b / "summary.json").read_text() for b in diagnosis.BRANCHES} == summaries
  other = _diagnose(f"--source={source}", f"--workdir={out}", "--extra_frames=2000")
  assert other.returncode == 2 and "holds another config" in other.stderr


# -- input errors: one line, exit status 2, before anything runs -------------------------------------------------


@pytest.mark.parametrize("make_source, args, message", [
    (lambda tmp: tmp / "missing", ["--extra_frames=100"], "does not exist"),
    (lambda tmp: tmp, ["--extra_frames=100"], "no checkpoints"),
    (lambda tmp: tmp, ["--extra_frames=0"], "--extra_frames must be > 0"),
    (lambda tmp: tmp, ["--extra_frames=100", "--config.total_frames=9"], "the diagnosis sets"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, make_source, args, message):
  (tmp_path / "config.json").write_text("{}")  # A workdir without checkpoints.
  result = _diagnose(f"--source={make_source(tmp_path)}", f"--workdir={tmp_path / 'out'}", *args)
  assert result.returncode == 2
  assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
  assert message in result.stderr
  assert not (tmp_path / "out").exists()


# -- the report's arithmetic and the saved-config loader ------------------------------------------------------------


def _logs(evals, losses=()):
  return diagnosis.Logs(eval_return=list(evals), train_return=[], loss=list(losses), events=[], run=None)


def test_windows_and_verdict():
  source = _logs([(500, 9.0), (1000, 1.0), (2000, 3.0)], [(2000, 0.5)])
  branches = {"continue": _logs([(2000, 99.0), (3000, 2.0)]), "inject": _logs([(3000, 7.0), (3500, 99.0)])}
  stats = diagnosis.compare(source, branches, branch_frames=2000, window_frames=1000, end_frames=3000)
  assert stats["continue"]["eval_return"] == {"before": 3.0, "after": 2.0, "delta": -1.0, "n_before": 1,
                                              "n_after": 1}
  assert stats["inject"]["eval_return"]["delta"] == 4.0
  assert stats["inject"]["train_return"] == {"before": None, "after": None, "delta": None, "n_before": 0,
                                             "n_after": 0}
  # One paired evaluation after the branch point (3000): no CI, so inconclusive whatever the gap.
  diff = diagnosis.difference(branches, branch_frames=2000, end_frames=3000)
  assert diff == {"delta": 5.0, "lo": None, "hi": None, "n": 1, "frames": [3000]}
  line, shown = diagnosis.verdict(stats, diff)
  assert shown is None and line == ("inconclusive: +4.00 return (inject) vs -1.00 (continue), inject − continue +5.00 "
                                    "from 1 paired evaluation(s) after the branch point; a CI needs at least 3 (more "
                                    "--extra_frames or a shorter eval.period_frames)")
  stats["inject"]["eval_return"].update(after=None, delta=None)
  assert diagnosis.verdict(stats, diff)[1] is None


def _branches(inject, cont, start=2000, step=100):
  frames = [start + step * (i + 1) for i in range(len(inject))]
  return {"inject": _logs(zip(frames, inject)), "continue": _logs(zip(frames, cont))}


@pytest.mark.parametrize("inject, cont, shown, start", [
    ([5.0, 6.0, 7.0, 8.0], [1.0, 1.5, 1.0, 2.0], True, "learning resumes with injection"),  # Every gap > 0.
    ([1.0, 1.5, 1.0, 2.0], [5.0, 6.0, 7.0, 8.0], False, "no sign of plasticity loss"),  # Every gap < 0.
    ([3.0, 1.0, 4.0, 0.0], [2.0, 2.0, 2.0, 2.0], None, "inconclusive"),  # Gaps +1, −1, +2, −2: CI around 0.
    ([2.0, 2.0, 2.0, 2.0], [2.0, 2.0, 2.0, 2.0], None, "inconclusive"),  # Δ = +0.00 exactly: never a verdict.
])
def test_verdict_needs_a_ci_that_excludes_zero(inject, cont, shown, start):
  source = _logs([(2000, 1.0)])
  branches = _branches(inject, cont)
  stats = diagnosis.compare(source, branches, branch_frames=2000, window_frames=1000, end_frames=2400)
  diff = diagnosis.difference(branches, branch_frames=2000, end_frames=2400, reps=2000, seed=0)
  gaps = [i - c for i, c in zip(inject, cont)]
  assert diff["n"] == 4 and diff["delta"] == pytest.approx(sum(gaps) / 4)
  assert min(gaps) <= diff["lo"] <= diff["delta"] <= diff["hi"] <= max(gaps)  # A bootstrap of means stays inside.
  line, loss = diagnosis.verdict(stats, diff)
  assert loss is shown and line.startswith(start), line
  if shown is not None:
    assert "95 % CI" in line and "over 4 evaluations" in line
  # Evaluations only one branch made are not paired: one branch's extra point changes nothing.
  extra = dict(branches, inject=_logs([*branches["inject"].eval_return, (2350, 99.0)]))
  assert diagnosis.difference(extra, 2000, 2400, reps=2000, seed=0) == diff


def test_saved_config_rebuilds_the_config_exactly(tmp_path):
  config = _load_config_file("dqn").get_config("smoke")
  config.injection.frames = (3_000,)
  saved = json.loads(config.to_json_best_effort())
  rebuilt = _load_config_file("saved").from_json(saved)
  assert json.loads(rebuilt.to_json_best_effort()) == saved
  assert rebuilt.injection.frames == (3_000,) and isinstance(rebuilt.injection.hidden, tuple)
  with pytest.raises(ValueError, match="'network.nope'"):
    _load_config_file("saved").from_json({"network": {"nope": 1}})
