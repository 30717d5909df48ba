"""Every ```bash block of README.md, run at smoke size, so that the README cannot rot.

The rule (README.md points here):

1. Commands. Each line of a ```bash block is a command; a line ending in `\\` continues on the next; a `#` comment
   (a whole line, or after a space) is dropped. The commands run in README order, by bash, all in one shared
   directory — a temporary one holding symlinks `.venv` and `scripts` to the checkout's, but no `configs/`, so
   every `--config=configs/…` must resolve from another directory — with the checkout's `.venv/bin` first on
   PATH, JAX on the CPU and the fake envpool (tests/conftest.py `fake_run_env`: what is tested is that the
   commands work together, not Atari; the CLI, sweep, diagnosis and reproduction tests keep real-envpool runs).
   So `runs/pong`, made by the first command, is the run that the later commands (diagnosis, checkpoint listing,
   reincarnation, plots, aggregation) read, as a reader's would be.
2. Smoke size (`rewrite`). `--config=FILE[:ARG]` becomes `FILE:smoke` when ARG is absent or a scale or the demo
   (`cpu`, `demo`, `paper`), else `FILE:ARG,smoke` (a trailing `,cpu` replaced); `--config.total_frames=…` and
   `--config.eval.period_frames=…` are dropped (the smoke scale sets them); `--extra_frames=N` becomes 1000;
   `--config.num_seeds=N` becomes 2; a variant's frame count `<name>@<frames>` becomes `<name>@2k` (inside a smoke
   run's 4,000 frames), in `--variants` and `--compare` alike; `plasticity-rl-aggregate` draws 200 bootstrap
   samples for each estimate (`--reps`, `--poi_reps`, `--curve_reps`, `--profile_reps`: the CIs' precision is not
   what is tested).
3. Shortened. A sweep over a game set (`--games=atari57`, `atari26`, `atari5`) runs with `--dry_run` (hundreds of
   runs even at smoke size); `plasticity-rl-reproduce` runs with `--report_only` (its runs take hours;
   tests/test_reproduce.py launches a smoke one).
4. Skipped (`SKIPS`, each with its reason): `bash scripts/run_demo.sh` and `bash scripts/setup_env.sh && … pytest`
   (the set-up and the full test command: CI runs the second), `pip install -e '.[cuda]'` (GPU wheels),
   `--runner=slurm` (no SLURM here), `scripts/benchmark.py`, `scripts/profile_loop.py` and `scripts/replay_memory.py`
   (measurements: minutes each, and their output is the measurement).

Every command that runs must exit 0. Then a few checks that the commands did what the README says.
"""

import os
import pathlib
import re
import shlex
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SCALES = ("cpu", "demo", "paper", "smoke")
GAME_SETS = ("atari57", "atari26", "atari5")
SKIPS = (  # (pattern in the command, reason)
    (r"^bash scripts/run_demo\.sh\b", "the demo: set-up and a 5-minute run"),
    (r"^bash scripts/setup_env\.sh\b", "set-up and the full test suite (CI runs it)"),
    (r"^pip install -e '\.\[cuda\]'", "CUDA wheels: no GPU here"),
    (r"--runner=slurm\b", "no SLURM here"),
    (r"scripts/(benchmark|profile_loop|replay_memory)\.py\b", "a measurement of minutes"),
)


def commands(text: str) -> list[str]:
  """The commands of every ```bash block, in order (rule 1)."""
  out = []
  for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
    pending = ""
    for line in block.splitlines():
      line = re.sub(r"(^|\s)#.*$", "", line).rstrip()
      if line.endswith("\\"):
        pending += line[:-1].strip() + " "
        continue
      command = (pending + line.strip()).strip()
      pending = ""
      if command:
        out.append(command)
  return out


def skip_reason(command: str) -> str | None:
  return next((reason for pattern, reason in SKIPS if re.search(pattern, command)), None)


def _config(match: re.Match) -> str:
  path, _, arg = match.group(2).partition(":")
  name = arg.rsplit(",", 1)[0] if arg.endswith(",cpu") else arg
  return f"{match.group(1)}{path}:" + ("smoke" if name in ("", *SCALES) else f"{name},smoke")


def rewrite(command: str) -> str:
  """The smoke-size command (rules 2 and 3)."""
  command = re.sub(r"(--config=)(\S+)", _config, command)
  command = re.sub(r"\s--config\.(total_frames|eval\.period_frames)=\S+", "", command)
  command = re.sub(r"--extra_frames=\S+", "--extra_frames=1000", command)
  command = re.sub(r"--config\.num_seeds=\d+", "--config.num_seeds=2", command)
  command = re.sub(r"([a-z_]+)@[0-9][0-9kKM+.]*", r"\1@2k", command)
  if (command.startswith("plasticity-rl-sweep ") and re.search(rf"--games=({'|'.join(GAME_SETS)})\b", command)
      and "--dry_run" not in command):
    command += " --dry_run"
  if command.startswith("plasticity-rl-aggregate "):
    command = re.sub(r"\s--(reps|poi_reps|curve_reps|profile_reps)=\S+", "", command)
    command += " " + " ".join(f"--{name}=200" for name in ("reps", "poi_reps", "curve_reps", "profile_reps"))
  if command.startswith("plasticity-rl-reproduce ") and "--report_only" not in command:
    command += " --report_only"
  return command


def test_the_rewrite_rule():
  assert rewrite("plasticity-rl --config=configs/dqn.py --workdir=runs/pong") == (
      "plasticity-rl --config=configs/dqn.py:smoke --workdir=runs/pong")
  assert rewrite("plasticity-rl --config=configs/injection.py:double --workdir=w") == (
      "plasticity-rl --config=configs/injection.py:double,smoke --workdir=w")
  assert rewrite("x --config=configs/compare.py:redo,cpu --config.total_frames=200000 --config.eval.period_frames=5 "
                 "--config.seed=1") == "x --config=configs/compare.py:redo,smoke --config.seed=1"
  assert rewrite("plasticity-rl-sweep --config=configs/dqn.py:cpu --games=atari5 --variants=baseline,inject@50M,"
                 "reset@25M+75M") == ("plasticity-rl-sweep --config=configs/dqn.py:smoke --games=atari5 "
                                      "--variants=baseline,inject@2k,reset@2k --dry_run")
  assert rewrite("plasticity-rl-diagnose --source=a --extra_frames=10000000") == (
      "plasticity-rl-diagnose --source=a --extra_frames=1000")
  assert rewrite("plasticity-rl-aggregate --compare=baseline,inject@100k --reps=20000") == (
      "plasticity-rl-aggregate --compare=baseline,inject@2k --reps=200 --poi_reps=200 --curve_reps=200 "
      "--profile_reps=200")
  assert commands("```bash\na \\\n  b   # c\n# d\n\ne\n```\n```python\nf\n```\n") == ["a b", "e"]


def test_every_readme_command_runs_or_is_skipped_by_a_rule():
  listed = commands(README.read_text())
  assert len(listed) >= 15
  skipped = [c for c in listed if skip_reason(c)]
  assert len(skipped) == 7, skipped  # run_demo, setup_env + tests, CUDA, SLURM, benchmark, profile_loop, replay_memory.
  for command in listed:
    if not skip_reason(command):
      assert shlex.split(command)[0] in {"plasticity-rl", "plasticity-rl-sweep", "plasticity-rl-aggregate",
                                         "plasticity-rl-diagnose", "plasticity-rl-checkpoints", "plasticity-rl-plot",
                                         "plasticity-rl-reproduce"}, command


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory, fake_run_env):
  """Runs the README's commands in one directory; {command as written: CompletedProcess} and the directory."""
  cwd = tmp_path_factory.mktemp("readme")
  for name in (".venv", "scripts"):
    (cwd / name).symlink_to(REPO / name)
  env = {**fake_run_env, "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
  results = {}
  for command in commands(README.read_text()):
    if skip_reason(command):
      continue
    start = time.monotonic()
    results[command] = subprocess.run(["bash", "-c", rewrite(command)], cwd=cwd, env=env, capture_output=True,
                                      text=True, timeout=900, check=False)
    print(f"{time.monotonic() - start:6.1f} s  {rewrite(command)}")  # pytest -s shows where the time goes.
    if results[command].returncode != 0:
      break  # The later commands read this one's output.
  return cwd, results


@pytest.mark.slow
def test_readme_commands_run(readme_run):
  cwd, results = readme_run
  for command, result in results.items():
    assert result.returncode == 0, (f"README command failed (exit {result.returncode}):\n  {command}\nrun as\n  "
                                    f"{rewrite(command)}\nstderr:\n{result.stderr[-3000:]}")
  assert len(results) == len([c for c in commands(README.read_text()) if not skip_reason(c)])
  runs = cwd / "runs"
  for workdir in ("pong", "alien_double", "pong_inject", "pong_inject_8seeds/seed_1", "pong_rr05",
                  "pong_diagnosis/inject", "example/Boxing/inject@2k/seed_1"):
    assert (runs / workdir / "summary.json").exists(), workdir
  assert (runs / "pong_diagnosis" / "diagnosis.md").exists() and (runs / "metrics.png").stat().st_size > 1000
  assert (runs / "example" / "results" / "aggregate.md").exists() and (runs / "results" / "aggregate.md").exists()
  aggregate = next(r for c, r in results.items() if "--runs='runs/*/*/*'" in c)
  skipped = [line for line in aggregate.stderr.splitlines() if line.startswith("skipped ")]
  assert len(skipped) == 1 and "tfevents" in skipped[0], aggregate.stderr[-2000:]  # runs/pong/tb/events.…
  reincarnated = next(r for c, r in results.items() if c.startswith("plasticity-rl-checkpoints --workdir=runs/pong_rr05"))
  assert reincarnated.stdout.strip().splitlines()[-1].endswith("ok")
