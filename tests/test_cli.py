"""plasticity_rl/cli.py's conventions, for every tool: --help exits 0 and lists the tool's own flags, bad input is
one line on stderr with exit status 2, and --config=configs/… loads from any directory."""

import os
import pathlib
import subprocess
import sys

import pytest

from plasticity_rl import cli
from plasticity_rl import sweep

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
# Each tool: its command and a flag of its own that --help must list.
TOOLS = {
    "plasticity-rl-aggregate": ([str(BIN / "plasticity-rl-aggregate")], "--last_evals"),
    "plasticity-rl-reproduce": ([str(BIN / "plasticity-rl-reproduce")], "--report_only"),
    "plasticity-rl-sweep": ([str(BIN / "plasticity-rl-sweep")], "--seeds_per_process"),
    "plasticity-rl-diagnose": ([str(BIN / "plasticity-rl-diagnose")], "--extra_frames"),
    "plasticity-rl-checkpoints": ([str(BIN / "plasticity-rl-checkpoints")], "--quick"),
    "plasticity-rl-plot": ([str(BIN / "plasticity-rl-plot")], "--metrics"),
    **{f"scripts/{name}.py": ([sys.executable, str(REPO / "scripts" / f"{name}.py")], flag) for name, flag in (
        ("benchmark", "--seed_batching"), ("profile_loop", "--iterations"), ("update_cost", "--num_actions"),
        ("replay_memory", "--num_envs"), ("metrics_cost", "--period_frames"))},
}


def _run_all(args_of: dict[str, list[str]], cwd) -> dict[str, subprocess.CompletedProcess]:
  """Runs the commands at once (each a Python start-up, most import JAX)."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  procs = {name: subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for name, args in args_of.items()}
  out = {}
  for name, proc in procs.items():
    stdout, stderr = proc.communicate(timeout=300)
    out[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
  return out


def test_help_exits_0_and_lists_the_tools_own_flags(tmp_path):
  results = _run_all({name: [*command, "--help"] for name, (command, _) in TOOLS.items()}, tmp_path)
  for name, (_, flag) in TOOLS.items():
    result = results[name]
    assert result.returncode == 0, (name, result.stderr[-2000:])
    assert f"  {flag}:" in result.stdout or f"  --[no]{flag[2:]}:" in result.stdout, (name, result.stdout[-2000:])
    assert "--helpfull" in result.stdout and "--[no]alsologtostderr" not in result.stdout, name


def test_bad_flags_are_one_line_and_exit_2(tmp_path):
  cases = {f"{name} unknown flag": [*command, "--no_such_flag=1"] for name, (command, _) in TOOLS.items()
           if name.startswith("plasticity-rl") or name == "scripts/replay_memory.py"}
  cases["plasticity-rl-plot missing flag"] = [*TOOLS["plasticity-rl-plot"][0], "--runs=a"]
  cases["plasticity-rl-reproduce bad enum"] = [*TOOLS["plasticity-rl-reproduce"][0], "--preset=nope", "--games=Pong",
                                               "--root=r"]
  cases["plasticity-rl-checkpoints argument"] = [*TOOLS["plasticity-rl-checkpoints"][0], f"--workdir={tmp_path}", "x"]
  cases["plasticity-rl-sweep bad int"] = [*TOOLS["plasticity-rl-sweep"][0], "--config=configs/dqn.py", "--root=r",
                                          "--games=Pong", "--parallel=two"]
  results = _run_all(cases, tmp_path)
  for name, result in results.items():
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (name, result.stderr)
  assert "no_such_flag" in results["plasticity-rl-plot unknown flag"].stderr
  assert "--metrics" in results["plasticity-rl-plot missing flag"].stderr
  assert "unexpected argument(s) ['x']" in results["plasticity-rl-checkpoints argument"].stderr


def test_config_path_resolves_against_the_package_configs(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  dqn = os.path.join(cli.CONFIGS_DIR, "dqn.py")
  assert cli.config_path("configs/dqn.py") == dqn and cli.config_path("dqn.py") == dqn
  assert cli.config_spec("configs/injection.py:double,smoke") == os.path.join(cli.CONFIGS_DIR, "injection.py") + \
      ":double,smoke"
  assert cli.config_path("configs/nope.py") == "configs/nope.py"  # Left as given: the tool's error names it.
  (tmp_path / "configs").mkdir()
  (tmp_path / "configs" / "dqn.py").write_text("")
  assert cli.config_path("configs/dqn.py") == "configs/dqn.py"  # A file here wins.
  assert cli.resolve_config_args(["x", "--config=dqn.py:smoke", "--config.seed=1", "--config", "drq_eps.py"]) == [
      "x", f"--config={os.path.join(cli.CONFIGS_DIR, 'dqn.py')}:smoke", "--config.seed=1", "--config",
      os.path.join(cli.CONFIGS_DIR, "drq_eps.py")]
  assert (REPO / "configs").resolve() == pathlib.Path(cli.CONFIGS_DIR)  # configs/ is the package's (a symlink).
  monkeypatch.chdir(REPO)


def test_a_config_given_from_another_directory_loads(tmp_path, monkeypatch):
  """From a directory without configs/: the config file loads (its fields are checked), and a sweep plans."""
  monkeypatch.chdir(tmp_path)
  assert not (tmp_path / "configs").exists()
  assert sweep.config_spec("configs/dqn.py:smoke") == os.path.join(cli.CONFIGS_DIR, "dqn.py") + ":smoke"
  results = _run_all({
      "main": [str(BIN / "plasticity-rl"), "--config=configs/dqn.py:smoke", f"--workdir={tmp_path / 'w'}",
               "--config.total_frames=-4"],
      "sweep": [*TOOLS["plasticity-rl-sweep"][0], "--config=configs/compare.py:redo,smoke", f"--root={tmp_path / 's'}",
                "--games=Pong", "--seeds=0", "--dry_run"],
      "missing": [str(BIN / "plasticity-rl"), "--config=configs/nope.py", f"--workdir={tmp_path / 'w'}"],
  }, tmp_path)
  main = results["main"]  # The config was read: its validation refuses the override.
  assert main.returncode == 2 and "total_frames" in main.stderr and "no such file" not in main.stderr, main.stderr
  assert not (tmp_path / "w").exists()
  plan = results["sweep"]  # compare.py loads variants.py beside it.
  assert plan.returncode == 0, plan.stderr
  assert f"config {os.path.join(cli.CONFIGS_DIR, 'compare.py')}:redo,smoke" in plan.stdout
  assert "dry run: nothing launched" in plan.stdout
  missing = results["missing"]
  assert missing.returncode == 2 and missing.stderr.strip() == "error: --config file configs/nope.py: no such file"


@pytest.mark.parametrize("name", ["dqn", "injection", "compare", "drq_eps", "dopamine_dqn", "expansion"])
def test_config_files_import_only_the_package(name):
  source = (pathlib.Path(cli.CONFIGS_DIR) / f"{name}.py").read_text()
  imports = {line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))}
  assert imports <= {"plasticity_rl", "importlib", "os", "re", "json", "typing", "ml_collections"}, imports


def test_a_sweep_root_made_through_the_configs_symlink_reopens_with_the_package_path(tmp_path):
  """Sweeps launched before configs/ moved into the package (or from the checkout) name configs/…: still theirs."""
  through_link = f"{REPO / 'configs' / 'drq_eps.py'}:smoke"
  manifest = sweep.Manifest.open(str(tmp_path), through_link, [])
  manifest.save()
  assert sweep.Manifest.open(str(tmp_path), f"{os.path.join(cli.CONFIGS_DIR, 'drq_eps.py')}:smoke", []).exists()
  with pytest.raises(sweep.SweepError, match="holds a sweep of --config="):
    sweep.Manifest.open(str(tmp_path), f"{os.path.join(cli.CONFIGS_DIR, 'drq_eps.py')}:cpu", [])


def test_the_tools_modules_import_together_and_define_their_flags_when_they_run():
  """The tools share flag names (--runs, --games, --workdir, --config) and their modules are libraries too: importing
  all of them in one process (as the test suite does) defines none of their flags; a tool defines its own in cli.run."""
  modules = ("plasticity_rl.main", "plasticity_rl.reproduce", "plasticity_rl.analysis.aggregate",
             "plasticity_rl.plot_metrics", "plasticity_rl.diagnose", "plasticity_rl.list_checkpoints",
             "plasticity_rl.launch_sweep")
  code = ("import importlib, sys\nfrom absl import flags\nfrom plasticity_rl import cli\n"
          f"for name in {modules!r}:\n  importlib.import_module(name)\n"
          "print(sorted(n for n in ('runs', 'games', 'preset', 'source', 'quick', 'root') if n in flags.FLAGS))\n"
          "cli.define_flags('plasticity_rl.reproduce')\n"
          "print(sorted(f.name for f in flags.FLAGS.get_flags_for_module('plasticity_rl.reproduce'))[:3])\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.returncode == 0, out.stderr
  assert out.stdout.splitlines() == ["[]", "['games', 'keep', 'override']"]
