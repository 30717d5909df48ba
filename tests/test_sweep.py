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
LAUNCH = ["-m", "plasticity_rl.launch_sweep"]
SMOKE = os.path.join(REPO, "configs", "dqn.py") + ":smoke"
VARIANTS = sweep.load_variants(os.path.join(REPO, "configs", "variants.py"))


def _launch(*args, timeout=240):
  return subprocess.run([sys.executable, *LAUNCH, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


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


# ----------------------------------------------------------------------------- seeds per process


def _seeds(processes):
  return [(p.runs[0].variant, p.seeds) for p in processes]


def test_group_makes_processes_of_consecutive_seeds(tmp_path):
  runs = _runs(tmp_path, variants=("baseline", "inject@2k"), seeds=(0, 1, 2, 3, 5))
  assert _seeds(sweep.group(runs, 4)) == [("baseline", [0, 1, 2, 3]), ("inject@2k", [0, 1, 2, 3]),
                                          ("baseline", [5]), ("inject@2k", [5])]
  assert [p.seeds for p in sweep.group(runs, 2)[:4]] == [[0, 1], [0, 1], [2, 3], [2, 3]]
  single = sweep.group(runs, 1)
  assert [p.runs for p in single] == [(r,) for r in runs] and not any(p.multi for p in single)
  assert [p.command for p in single] == [r.command for r in runs] and [p.log for p in single] == [r.log for r in runs]
  assert [(p.name, p.workdir) for p in single] == [(r.name, r.workdir) for r in runs]
  process, alone = sweep.group(runs, 4)[0], sweep.group(runs, 4)[2]
  assert process.name == "Pong/baseline/seeds_0-3" and process.workdir == os.path.join(tmp_path, "Pong", "baseline")
  assert process.log == os.path.join(tmp_path, "logs", "Pong", "baseline", "seeds_0-3.log")
  assert f"--workdir={process.workdir}" in process.command
  assert process.command[-3:] == ["--config.variant=baseline", "--config.seed=0", "--config.num_seeds=4"]
  assert sum(a.startswith("--config.seed=") for a in process.command) == 1
  assert process.spec()["workdirs"] == [r.workdir for r in runs if r.variant == "baseline" and r.seed < 4]
  assert alone.command == runs[8].command and alone.log == runs[8].log  # A lone seed runs as a single run.
  assert sweep.parse_config(process.config_args).num_seeds == 4
  with pytest.raises(sweep.SweepError, match=r"--seeds_per_process must be an integer ≥ 1.*got 0"):
    sweep.group(runs, 0)
  with pytest.raises(sweep.SweepError, match=r"sets config.num_seeds itself \(use --seeds_per_process\)"):
    _runs(tmp_path, overrides=("num_seeds=2",))


def test_group_leaves_out_finished_seeds_and_splits_at_other_checkpoints(tmp_path):
  runs = _runs(tmp_path, seeds=(0, 1, 2, 3, 4))

  def touch(run, *paths):
    for path in paths:
      os.makedirs(os.path.join(run.workdir, os.path.dirname(path)), exist_ok=True)
      if not path.endswith("/"):
        open(os.path.join(run.workdir, path), "w").write("{}")

  touch(runs[1], "summary.json", "checkpoints/4000/")  # Finished: never started again.
  assert [p.seeds for p in sweep.group(runs, 4)] == [[0], [2, 3, 4]]
  touch(runs[2], "config.json", "checkpoints/1000/", "checkpoints/2000/")  # Would resume at 2000 frames.
  touch(runs[3], "config.json")  # Started, no checkpoint: starts from 0 frames, like seed 4.
  assert sweep.last_checkpoint(runs[2].workdir) == 2000 and sweep.last_checkpoint(runs[3].workdir) is None
  assert [p.seeds for p in sweep.group(runs, 4)] == [[0], [2], [3, 4]]
  touch(runs[3], "checkpoints/2000/", "checkpoints/3000.orbax-checkpoint-tmp-17/")  # An unfinished save: ignored.
  assert [p.seeds for p in sweep.group(runs, 4)] == [[0], [2, 3], [4]]
  assert [p.seeds for p in sweep.group(runs, 1)] == [[0], [2], [3], [4]]


def test_check_compares_grouped_seeds_with_their_single_seed_config(tmp_path):
  runs = _runs(tmp_path, seeds=(0, 1, 2))
  processes = sweep.group(runs, 3)
  _write_config_json(runs[0])  # As a single run (or a earlier launch's single process) wrote it.
  assert sweep.check(runs, processes) == {}  # multi_seed.seed_config writes the same config.json.
  from plasticity_rl import multi_seed  # pylint: disable=g-import-not-at-top
  grouped = multi_seed.seed_config(sweep.parse_config(processes[0].config_args), 2)
  os.makedirs(runs[2].workdir)
  open(os.path.join(runs[2].workdir, "config.json"), "w").write(grouped.to_json_best_effort())
  assert sweep.check(runs) == {}  # And the other way round.
  other = _runs(tmp_path, seeds=(0, 1, 2), overrides=("total_frames=3500",))
  conflicts = sweep.check(other, sweep.group(other, 2))
  assert sorted(conflicts) == [runs[0].name, runs[2].name] and "total_frames: 3000 -> 3500" in conflicts[runs[0].name]
  open(os.path.join(tmp_path, "Pong", "baseline", "config.json"), "w").write("{}")  # The parent holds a run.
  assert "would refuse it" in sweep.check(runs, processes)[runs[1].name]
  adaptive = _runs(tmp_path / "a", variants=("adaptive_rr",), seeds=(0, 1))  # Per-seed decisions group too.
  assert sweep.check(adaptive, sweep.group(adaptive, 2)) == {}


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
mode, workdirs = sys.argv[1], sys.argv[2:]
print("started", os.environ.get("CUDA_VISIBLE_DEVICES"), workdirs, flush=True)
for workdir in workdirs:
  os.makedirs(workdir, exist_ok=True)
  json.dump({"gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}, open(os.path.join(workdir, "env.json"), "w"))
time.sleep(0.3)
if mode == "fail":
  print("boom: something broke", file=sys.stderr)
  sys.exit(3)
for workdir in workdirs:
  json.dump({}, open(os.path.join(workdir, "summary.json"), "w"))
"""


def _fake_spec(failing=()):
  """make_spec for run_local: a process of the fake command, which fails if it runs one of the `failing` runs."""
  def spec(process):
    mode = "fail" if any(run in failing for run in process.runs) else "ok"
    return {**process.spec(), "command": [sys.executable, "-c", _FAKE, mode, *process.spec()["workdirs"]]}
  return spec


def test_local_runner_skips_resumes_reports_failures_and_pins_gpus(tmp_path):
  runs = _runs(tmp_path, variants=("baseline", "inject@2k"), seeds=(0, 1, 2))
  done, unfinished, failing = runs[0], runs[1], runs[2]
  os.makedirs(done.workdir)
  open(os.path.join(done.workdir, "summary.json"), "w").write("{}")
  os.makedirs(unfinished.workdir)
  open(os.path.join(unfinished.workdir, "config.json"), "w").write("{}")

  spec = _fake_spec(failing=[failing])
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


def test_local_runner_runs_processes_of_seeds(tmp_path):
  runs = _runs(tmp_path, variants=("baseline", "inject@2k"), seeds=(0, 1, 2))
  failing = runs[5]  # inject@2k seed 2: its process (seeds 2 alone) fails.
  os.makedirs(runs[2].workdir)
  open(os.path.join(runs[2].workdir, "summary.json"), "w").write("{}")  # baseline seed 1 finished.
  processes = sweep.group(runs, 2)
  assert [(p.name, p.seeds) for p in processes] == [
      ("Pong/baseline/seed_0", [0]), ("Pong/inject@2k/seeds_0-1", [0, 1]), ("Pong/baseline/seed_2", [2]),
      ("Pong/inject@2k/seed_2", [2])]
  manifest = sweep.Manifest.open(str(tmp_path), sweep.config_spec(SMOKE), ["total_frames=3000"])
  manifest.add_launch(["test"], "local", runs, processes)
  out = io.StringIO()
  failed = sweep.run_local(runs, manifest, parallel=2, out=out, poll_s=0.05, make_spec=_fake_spec([failing]),
                           seeds_per_process=2)
  text = out.getvalue()
  assert failed == 1, text
  assert "6 runs: 1 done already (skipped), 5 to run in 4 processes (up to 2 seeds each), 2 at a time" in text
  assert "start Pong/inject@2k/seeds_0-1" in text and "done  Pong/inject@2k/seeds_0-1" in text
  assert "finished: 4 done, 1 failed, 1 skipped" in text
  log = os.path.join(tmp_path, "logs", "Pong", "inject@2k", "seeds_0-1.log")
  assert "inject@2k/seed_1']" in open(log).read()  # One log per process: the fake prints its workdirs.
  data = {r["name"]: r for r in json.load(open(tmp_path / "sweep.json"))["runs"]}
  for seed in (0, 1):
    entry = data[f"Pong/inject@2k/seed_{seed}"]
    assert entry["status"] == "done" and entry["log"] == log and entry["workdir"] == runs[2 * seed + 1].workdir
    assert entry["process"] == {"name": "Pong/inject@2k/seeds_0-1", "workdir": os.path.dirname(runs[1].workdir),
                                "seeds": [0, 1]}
    assert entry["command_line"].endswith("--config.variant=inject@2k --config.seed=0 --config.num_seeds=2")
  assert "process" not in data["Pong/baseline/seed_0"] and data["Pong/baseline/seed_0"]["log"] == runs[0].log
  assert data[failing.name]["status"] == "failed" and data["Pong/baseline/seed_1"]["status"] == "done"
  assert json.load(open(tmp_path / "sweep.json"))["launches"][0]["seeds_per_process"] == 2


def test_submit_makes_one_job_per_process(tmp_path, monkeypatch):
  runs = _runs(tmp_path, seeds=(0, 1, 2))

  class Job:  # What submit and wait_jobs use of a submitit job; it runs when asked whether it is done.
    def __init__(self, i, spec):
      self.job_id, self.spec, self.paths, self.error = f"7_{i}", spec, None, None

    def done(self):
      self.error = None
      try:
        sweep.SubmittedRun()(_fake_spec()(process_of[self.spec["name"]]))
      except sweep.RunFailed as e:
        self.error = e
      return True

    def exception(self):
      return self.error

  class Executor:
    folder = str(tmp_path / ".submitit" / "%j")

    def map_array(self, fn, specs):
      assert isinstance(fn, sweep.SubmittedRun)
      return [Job(i, spec) for i, spec in enumerate(specs)]

  monkeypatch.setattr(sweep.slurm, "make_executor", lambda *args: Executor())  # Where submit looks it up.
  monkeypatch.setenv("SUBMITIT_DEBUG_JOB_ID", "7")  # SubmittedRun runs in a (debug) submitit job.
  manifest = sweep.Manifest.open(str(tmp_path), sweep.config_spec(SMOKE), ["total_frames=3000"])
  manifest.add_launch(["test"], "slurm", runs, sweep.group(runs[:2], 2))
  out = io.StringIO()
  submitted = sweep.submit(runs, manifest, cluster="debug", out=out, skip=[runs[2].name], seeds_per_process=2)
  process_of = {p.name: p for p, _ in submitted}
  assert list(process_of) == ["Pong/baseline/seeds_0-1"] and submitted[0][1].spec == submitted[0][0].spec()
  assert "3 runs: 0 done already (skipped), 1 still queued or running (skipped), 2 to submit in 1 process" in (
      out.getvalue())
  data = {r["name"]: r for r in json.load(open(tmp_path / "sweep.json"))["runs"]}
  assert [(data[r.name]["status"], data[r.name].get("job_id")) for r in runs] == [
      ("submitted", "7_0"), ("submitted", "7_0"), ("pending", None)]
  assert sweep.wait_jobs(submitted, manifest, out=out, poll_s=0.01) == 0
  assert "finished: 2 done, 0 failed" in out.getvalue() and all(sweep.is_done(r) for r in runs[:2])
  assert [r["name"] for r in sweep.SubmittedRun()(submitted[0][0].spec())["runs"]] == ["seed_0", "seed_1"]


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


@pytest.mark.slow
def test_local_runner_real_sweep_with_two_seeds_per_process(tmp_path):
  root = tmp_path / "sweep"
  args = [f"--config={SMOKE}", f"--root={root}", "--games=Pong", "--num_seeds=2", "--seeds_per_process=2", "--gpus=",
          "--config.total_frames=3000", "--config.log.tensorboard=false", "--config.log.learning_curve=false"]
  result = _launch(*args, "--dry_run")
  assert result.returncode == 0, result.stdout + result.stderr
  assert "pending  Pong/baseline/seed_1  [process Pong/baseline/seeds_0-1]" in result.stdout
  assert f"--workdir={root / 'Pong' / 'baseline'} " in result.stdout and "--config.num_seeds=2" in result.stdout
  assert not root.exists()
  result = _launch(*args)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "2 to run in 1 process (up to 2 seeds each)" in result.stdout
  assert "finished: 2 done, 0 failed" in result.stdout
  summaries = _summaries(root)
  assert [(s["seed"], s["num_seeds"]) for s in summaries] == [(0, 2), (1, 2)]  # Trained together.
  assert summaries[0]["frames"] == summaries[1]["frames"] >= 3000
  assert not (root / "Pong" / "baseline" / "config.json").exists()
  log = root / "logs" / "Pong" / "baseline" / "seeds_0-1.log"
  data = json.load(open(root / "sweep.json"))
  assert [(r["name"], r["status"], r["log"]) for r in data["runs"]] == [
      ("Pong/baseline/seed_0", "done", str(log)), ("Pong/baseline/seed_1", "done", str(log))]
  results = load.load_results(runs=[str(root)])  # The analysis reads the sweep through sweep.json.
  assert results.empty_runs == [] and sorted(results.episodes["seed"].unique()) == [0, 1]
  result = _launch(*args, "--dry_run")
  assert result.returncode == 0 and "2 runs: 2 done" in result.stdout, result.stdout + result.stderr
  result = _launch(*args)  # Idempotent: nothing to run, and the seeds' config.json match (no conflict).
  assert result.returncode == 0 and "2 done already (skipped), 0 to run" in result.stdout, result.stdout
  assert open(log).read().count(" attempt ") == 1


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
      [sys.executable, *LAUNCH, f"--config={SMOKE}", f"--root={root}", "--games=Pong", "--seeds=0,1",
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


def test_a_run_with_a_damaged_summary_is_not_done(tmp_path):
  run = sweep.expand(str(tmp_path), SMOKE, ["Pong"], {"baseline": {}}, [0])[0]
  os.makedirs(run.workdir)
  assert not sweep.is_done(run) and sweep.disk_status(run) == "pending"
  summary = os.path.join(run.workdir, "summary.json")
  with open(summary, "w") as f:
    f.write('{"frames": 40')  # Torn by a crash: the run's own command rewrites it, so the sweep must start it.
  assert not sweep.is_done(run)
  with open(summary, "w") as f:
    json.dump({"frames": 4000}, f)
  assert sweep.is_done(run) and sweep.disk_status(run) == "done"


@pytest.mark.slow
def test_the_diagnosis_at_scale_is_two_sweeps_each_run_branching_its_own_games_seed(tmp_path, fake_run_env):
  """docs/diagnosis.md "At scale": baselines, then continue vs inject from each (game, seed)'s own checkpoint
  (`{game}`, `{seed}` in reincarnate.path), read as the paired per-game table with its verdicts."""
  from plasticity_rl.analysis import aggregate  # pylint: disable=g-import-not-at-top
  common = [f"--config={SMOKE}", "--games=Pong,Breakout", "--seeds=0", "--parallel=2", "--gpus=",
            "--config.log.tensorboard=false", "--config.log.learning_curve=false", "--config.eval.period_frames=1000"]
  def launch(*args):
    result = subprocess.run([sys.executable, *LAUNCH, *common, *args], capture_output=True, text=True, timeout=600,
                            cwd=REPO, env=fake_run_env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  launch(f"--root={tmp_path / 'base'}", "--variants=baseline", "--config.total_frames=2000")
  launch(f"--root={tmp_path / 'branch'}", "--variants=baseline,inject@2016", "--config.total_frames=3008",
         f"--config.reincarnate.path={tmp_path / 'base'}/{{game}}/baseline/seed_{{seed}}",
         "--config.reincarnate.load=all")
  for game in ("Pong", "Breakout"):
    for variant in ("baseline", "inject@2016"):
      rows = [json.loads(line) for line in open(tmp_path / "branch" / game / variant / "seed_0" / "metrics.jsonl")]
      run = next(r for r in rows if r["kind"] == "run")
      assert run["reincarnated_from"] == str(tmp_path / "base" / game / "baseline" / "seed_0" / "checkpoints" / "2000")
      injections = [r for r in rows if r["kind"] == "event" and r["name"] == "injection"]
      assert [(r["frames"], r["max_abs_dq"]) for r in injections] == ([(2016, 0.0)] if variant != "baseline" else [])
  results = load.load_results(runs=load.expand([str(tmp_path / "branch")], "runs"))
  analysis = aggregate.analyze(results, reps=200, poi_reps=200, curve_reps=200, profile_reps=200,
                              paired=["inject@2016:baseline"])
  assert sorted(analysis.paired["game"]) == ["Breakout", "Pong"]
  assert set(analysis.paired["verdict"]) == {"inconclusive"}  # One seed per game: no CI, no verdict.
