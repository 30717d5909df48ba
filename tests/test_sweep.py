"""Tests of the sweep launcher: expansion, names, variants, manifest, idempotency, both runners."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from plasticity_rl import atari_games
from plasticity_rl import sweep
from plasticity_rl.analysis import load

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, "scripts", "launch_sweep.py")
SMOKE = os.path.join(REPO, "configs", "dqn.py") + ":smoke"
VARIANTS = sweep.load_variants(os.path.join(REPO, "configs", "variants.py"))


def _launch(*args, timeout=240):
  return subprocess.run([sys.executable, LAUNCH, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _runs(root, games=("Pong",), variants=("baseline",), seeds=(0,), overrides=("total_frames=3000",)):
  return sweep.expand(str(root), SMOKE, sweep.resolve_games(games), sweep.resolve_variants(variants, VARIANTS),
                      seeds, overrides)


# ----------------------------------------------------------------------------- names and expansion


def test_resolve_games_sets_spellings_and_order():
  assert sweep.resolve_games(["atari5", "pong", "Pong-v5", "Qbert"]) == [*atari_games.ATARI5, "Pong"]
  assert len(sweep.resolve_games(["atari57"])) == 57
  assert len(sweep.resolve_games(["atari26", "atari5"])) == 26 + 3  # BattleZone and Qbert are in both.


def test_unknown_game_names_it_and_the_allowed_ones():
  with pytest.raises(sweep.SweepError, match=r"Pongg.*Alien.*atari57"):
    sweep.resolve_games(["Pong", "Pongg"])


def test_variant_registry_and_patterns():
  get = VARIANTS.get_variant
  assert get("baseline") == {}
  assert get("inject@50M") == {"injection.frames": (50_000_000,)}
  assert get("inject@25M+75M") == {"injection.frames": (25_000_000, 75_000_000)}
  assert get("grow") == {"network.hidden": 128, "injection.frames": (50_000_000, 100_000_000),
                         "injection.hidden": (256, 512)}
  assert get("inject@2k") == {"injection.frames": (2000,)}
  assert get("inject@1.5M+3_000_000") == {"injection.frames": (1_500_000, 3_000_000)}
  assert get("grow@1k+2k+3k")["injection.hidden"] == (256, 512, 1024)
  assert get("reset@2k") == {"reset.frames": (2000,), "reset.target": "head"}
  assert get("redo")["redo.tau"] == 0.1 and get("crelu")["network.activation"] == "crelu"
  for bad in ("nope", "inject@", "inject@2x", "reset@50X", "redo@5M"):
    with pytest.raises(ValueError, match="allowed: baseline, inject@50M"):
      get(bad)
  with pytest.raises(sweep.SweepError, match=r"unknown variant 'nope'.*inject@<F>"):
    sweep.resolve_variants(["baseline", "nope"], VARIANTS)


def test_expand_counts_names_and_overrides(tmp_path):
  runs = _runs(tmp_path, games=("Pong", "breakout"), variants=("baseline", "inject@2k", "grow@1.5k+2.5k"), seeds=(0, 3))
  assert len(runs) == 2 * 3 * 2
  assert len({r.name for r in runs}) == len(runs) and len({r.workdir for r in runs}) == len(runs)
  assert [r.name for r in runs[:3]] == ["Pong/baseline/seed_0", "Pong/inject@2k/seed_0", "Pong/grow@1.5k+2.5k/seed_0"]
  assert runs[-1].name == "Breakout/grow@1.5k+2.5k/seed_3"  # Canonical game name; seed-major order.
  run = runs[1]
  assert run.workdir == os.path.join(tmp_path, "Pong", "inject@2k", "seed_0")
  assert run.log == os.path.join(tmp_path, "logs", "Pong", "inject@2k", "seed_0.log")  # Not in ROOT/*/*/*.
  assert run.command[:3] == [sys.executable, "-m", "plasticity_rl.main"]
  assert f"--workdir={run.workdir}" in run.command
  assert run.command[3] == f"--config={SMOKE}"
  assert run.command[-5:] == ["--config.total_frames=3000", "--config.injection.frames=(2000,)", "--config.game=Pong",
                              "--config.variant=inject@2k", "--config.seed=0"]
  assert sweep.safe_name("a b/c:d") == "a_b_c_d" and sweep.safe_name("..") == "_.."


def test_every_run_config_parses_as_main_would(tmp_path):
  runs = _runs(tmp_path, variants=("baseline", "inject@2k", "grow@1.5k+2.5k"), seeds=(0, 1),
               overrides=("learner.replay_ratio=0.5", "--config.total_frames=3000"))
  assert sweep.check(runs) == {}
  configs = {r.name: sweep.parse_config(r.config_args) for r in runs}
  grow = configs["Pong/grow@1.5k+2.5k/seed_1"]
  assert (grow.seed, grow.variant, grow.game, grow.total_frames) == (1, "grow@1.5k+2.5k", "Pong", 3000)
  assert grow.learner.replay_ratio == 0.5 and grow.network.hidden == 128
  assert tuple(grow.injection.frames) == (1500, 2500) and tuple(grow.injection.hidden) == (256, 512)
  assert tuple(configs["Pong/baseline/seed_0"].injection.frames) == ()


def test_bad_overrides_and_conflicts_are_errors(tmp_path):
  with pytest.raises(sweep.SweepError, match=r"inject@50M.*total_frames"):  # 50M > the smoke run's 3000 frames.
    sweep.check(_runs(tmp_path, variants=("inject@50M",)))
  with pytest.raises(sweep.SweepError, match=r"--config.learner.nope: the config has no field 'nope'"):
    sweep.check(_runs(tmp_path, overrides=("learner.nope=1",)))
  with pytest.raises(sweep.SweepError, match=r"variant 'grow' sets \['network.hidden'\]"):
    _runs(tmp_path, variants=("grow",), overrides=("network.hidden=32",))
  with pytest.raises(sweep.SweepError, match="sets config.seed itself"):
    _runs(tmp_path, overrides=("seed=3",))
  with pytest.raises(sweep.SweepError, match="give --seeds or --num_seeds"):
    sweep.resolve_seeds(["0"], 2)
  assert sweep.resolve_seeds(None, 3) == [0, 1, 2] and sweep.resolve_seeds(["4", "1", "4"]) == [4, 1]


# ----------------------------------------------------------------------------- manifest, status, dry run


def _write_config_json(run):
  os.makedirs(run.workdir, exist_ok=True)
  with open(os.path.join(run.workdir, "config.json"), "w") as f:
    f.write(sweep.parse_config(run.config_args).to_json_best_effort())


def test_manifest_keeps_one_config_per_root(tmp_path):
  runs = _runs(tmp_path)
  manifest = sweep.Manifest.open(str(tmp_path), sweep.config_spec(SMOKE), ["total_frames=3000"])
  manifest.add_launch(["x"], "local", runs)
  manifest.save()
  data = json.load(open(tmp_path / "sweep.json"))
  assert data["overrides"] == ["total_frames=3000"] and data["runs"][0]["command"] == runs[0].command
  assert data["runs"][0]["status"] == "pending" and data["counts"] == {"pending": 1}
  again = sweep.Manifest.open(str(tmp_path), sweep.config_spec(SMOKE), ["--config.total_frames=3000"])
  assert again.get(runs[0].name)["name"] == runs[0].name
  with pytest.raises(sweep.SweepError, match="holds a sweep of"):
    sweep.Manifest.open(str(tmp_path), sweep.config_spec(SMOKE), ["total_frames=4000"])


def test_dry_run_prints_statuses_and_writes_nothing(tmp_path):
  root = tmp_path / "sweep"
  args = [f"--config={SMOKE}", f"--root={root}", "--games=Pong", "--variants=baseline,inject@2k", "--num_seeds=2",
          "--config.total_frames=3000", "--dry_run"]
  result = _launch(*args)
  assert result.returncode == 0, result.stderr
  assert "pending  Pong/inject@2k/seed_1" in result.stdout and "4 runs: 4 pending" in result.stdout
  assert "--config.injection.frames=(2000,)" not in result.stdout  # The command shown is the first run's.
  assert not root.exists()
  runs = _runs(root, variants=("baseline", "inject@2k"), seeds=(0, 1))
  _write_config_json(runs[0])
  open(os.path.join(runs[0].workdir, "summary.json"), "w").write("{}")
  _write_config_json(runs[1])
  before = sorted(str(p) for p in root.rglob("*"))
  result = _launch(*args)
  assert result.returncode == 0, result.stderr
  assert "done     Pong/baseline/seed_0" in result.stdout and "resume   Pong/inject@2k/seed_0" in result.stdout
  assert "4 runs: 1 done, 2 pending, 1 resume" in result.stdout
  assert sorted(str(p) for p in root.rglob("*")) == before
  # A workdir made with another config is a conflict: reported, and nothing is launched.
  result = _launch(*args[:-2], "--config.total_frames=3500", "--dry_run")
  assert result.returncode == 2 and "conflict" in result.stdout and "total_frames: 3000 -> 3500" in result.stdout


def test_cli_rejects_unknown_names(tmp_path):
  result = _launch(f"--config={SMOKE}", f"--root={tmp_path}", "--games=Pong,NotAGame", "--dry_run")
  assert result.returncode != 0 and "NotAGame" in result.stderr and "atari57" in result.stderr
  result = _launch(f"--config={SMOKE}", f"--root={tmp_path}", "--games=Pong", "--variants=baseline,nope", "--dry_run")
  assert result.returncode != 0 and "'nope'" in result.stderr and "inject@50M" in result.stderr
  assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- local runner (fake commands)


_FAKE = """
import json, os, sys, time
workdir, mode = sys.argv[1], sys.argv[2]
os.makedirs(workdir, exist_ok=True)
print("started", os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
json.dump({"gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}, open(os.path.join(workdir, "env.json"), "w"))
time.sleep(0.3)
if mode == "fail":
  print("boom: something broke", file=sys.stderr)
  sys.exit(3)
json.dump({}, open(os.path.join(workdir, "summary.json"), "w"))
"""


def test_local_runner_skips_resumes_reports_failures_and_pins_gpus(tmp_path):
  runs = _runs(tmp_path, variants=("baseline", "inject@2k"), seeds=(0, 1, 2))
  done, unfinished, failing = runs[0], runs[1], runs[2]
  os.makedirs(done.workdir)
  open(os.path.join(done.workdir, "summary.json"), "w").write("{}")
  os.makedirs(unfinished.workdir)
  open(os.path.join(unfinished.workdir, "config.json"), "w").write("{}")

  def spec(run):
    mode = "fail" if run is failing else "ok"
    return {**run.spec(), "command": [sys.executable, "-c", _FAKE, run.workdir, mode]}

  manifest = sweep.Manifest.open(str(tmp_path), sweep.config_spec(SMOKE), ["total_frames=3000"])
  manifest.add_launch(["test"], "local", runs)
  out = io.StringIO()
  failed = sweep.run_local(runs, manifest, parallel=3, gpus=["0", "1"], out=out, poll_s=0.05, make_spec=spec)
  text = out.getvalue()
  assert failed == 1, text
  assert "6 runs: 1 done already (skipped), 5 to run, 3 at a time on GPUs 0,1" in text
  assert f"start {unfinished.name} (resuming)" in text
  assert f"FAILED {failing.name} (exit status 3" in text and f"log: {failing.log}" in text and "boom" in text
  assert "finished: 4 done, 1 failed, 1 skipped" in text
  assert not os.path.exists(done.log)  # Never started.
  assert all(os.path.exists(os.path.join(r.workdir, "summary.json")) for r in runs if r is not failing)
  gpus = [json.load(open(os.path.join(r.workdir, "env.json")))["gpu"] for r in runs[1:]]
  assert set(gpus) == {"0", "1"}
  assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in os.environ
  data = json.load(open(tmp_path / "sweep.json"))
  status = {r["name"]: r["status"] for r in data["runs"]}
  assert status[failing.name] == "failed" and list(status.values()).count("done") == 5
  # Launched again: only the failed run goes (and fails again); its log keeps both attempts.
  out = io.StringIO()
  assert sweep.run_local(runs, manifest, parallel=2, out=out, poll_s=0.05, make_spec=spec) == 1
  assert "6 runs: 5 done already (skipped), 1 to run" in out.getvalue()
  assert open(failing.log).read().count("attempt ") == 2


def test_detect_gpus(tmp_path, monkeypatch):
  fake = tmp_path / "nvidia-smi"
  fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-a)'\necho 'GPU 1: NVIDIA H100 (UUID: GPU-b)'\n")
  fake.chmod(0o755)
  monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
  monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
  assert sweep.detect_gpus() == ["0", "1"]
  monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
  assert sweep.detect_gpus() == ["3", "5"]
  monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
  assert sweep.detect_gpus() == []
  monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
  monkeypatch.setenv("PATH", "/nonexistent")
  assert sweep.detect_gpus() == []


def test_one_launcher_per_root(tmp_path):
  with sweep.root_lock(str(tmp_path)):
    with pytest.raises(sweep.SweepError, match="another launcher"):
      with sweep.root_lock(str(tmp_path)):
        pass
  with sweep.root_lock(str(tmp_path)):
    pass


# ----------------------------------------------------------------------------- real sweeps (slow)


def _summaries(root, seeds=(0, 1)):
  return [json.load(open(root / "Pong" / "baseline" / f"seed_{s}" / "summary.json")) for s in seeds]


@pytest.mark.slow
def test_local_runner_real_sweep_then_relaunch_skips(tmp_path):
  root = tmp_path / "sweep"
  args = [f"--config={SMOKE}", f"--root={root}", "--games=Pong", "--num_seeds=2", "--parallel=2", "--gpus=",
          "--config.total_frames=3000", "--config.log.tensorboard=false", "--config.log.learning_curve=false"]
  result = _launch(*args)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "finished: 2 done, 0 failed" in result.stdout
  assert [(s["seed"], s["game"], s["variant"]) for s in _summaries(root)] == [(0, "Pong", "baseline"),
                                                                             (1, "Pong", "baseline")]
  data = json.load(open(root / "sweep.json"))
  assert [r["status"] for r in data["runs"]] == ["done", "done"] and data["counts"] == {"done": 2}
  results = load.load_results(runs=load.expand([f"{root}/*/*/seed_*"], "runs"))  # The analysis reads the sweep.
  assert results.empty_runs == [] and sorted(results.episodes["seed"].unique()) == [0, 1]
  result = _launch(*args)  # Idempotent: nothing to run.
  assert result.returncode == 0 and "2 done already (skipped), 0 to run" in result.stdout
  assert open(root / "logs" / "Pong" / "baseline" / "seed_0.log").read().count(" attempt ") == 1


def _cmdline(process):
  try:
    return process.cmdline()
  except psutil.Error:  # Gone meanwhile.
    return []


def _children(process):
  try:
    return process.children()
  except psutil.Error:
    return []


@pytest.mark.slow
def test_submitit_local_executor_real_sweep_with_preemption(tmp_path):
  """Two jobs through submitit's local executor; one is sent the pre-emption signal, requeues and finishes."""
  root = tmp_path / "sweep"
  launcher = subprocess.Popen(
      [sys.executable, LAUNCH, f"--config={SMOKE}", f"--root={root}", "--games=Pong", "--seeds=0,1",
       "--runner=slurm", "--submitit_cluster=local", "--gpus_per_run=0", "--grace_s=5", "--timeout_min=30",
       "--config.total_frames=3000", "--config.log.tensorboard=false", "--config.log.learning_curve=false"],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
  try:
    deadline = time.time() + 90
    while True:  # Find a job whose run has started (its handlers are installed), and pre-empt it.
      assert launcher.poll() is None and time.time() < deadline
      jobs = [p for p in psutil.Process(launcher.pid).children(recursive=True)
              if "submitit.core._submit" in " ".join(_cmdline(p))]
      started = [job for job in jobs for run in _children(job) if any(
          a.startswith("--workdir=") and os.path.exists(os.path.join(a.split("=", 1)[1], "config.json"))
          for a in _cmdline(run))]
      if started:
        break
      time.sleep(0.1)
    started[0].send_signal(signal.SIGUSR2)  # What Slurm sends before a time limit or a pre-emption.
    out, _ = launcher.communicate(timeout=150)
  finally:
    if launcher.poll() is None:
      launcher.kill()
  assert launcher.returncode == 0, out
  assert "finished: 2 done, 0 failed" in out
  assert len(_summaries(root)) == 2
  logs = [open(root / "logs" / "Pong" / "baseline" / f"seed_{s}.log").read() for s in (0, 1)]
  assert sorted(log.count(" attempt ") for log in logs) == [1, 2]  # The pre-empted run ran twice.
  assert sum("pre-empted or timed out" in log for log in logs) == 1
  data = json.load(open(root / "sweep.json"))
  assert [r["status"] for r in data["runs"]] == ["done", "done"] and all(r["job_id"] for r in data["runs"])
