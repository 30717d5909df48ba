"""Reliability (docs/reliability.md): one writer per workdir, every saved byte checked, every failure one line.

One test per case of the table; the runs are smoke configs in subprocesses (each refusal a few seconds, the
three runs marked slow 20-40 s on 2 busy cores), the rest in process. They run on the fake envpool
(tests/conftest.py): what is tested is how a process starts, stops and fails, not the game; tests/test_checkpoint.py
kills real-envpool runs.
"""

import glob
import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import types
import zlib

import jax
import numpy as np
import pandas as pd
import pytest

from plasticity_rl import checkpoint
from plasticity_rl import recorder as recorder_lib
from plasticity_rl import replay as replay_lib
from plasticity_rl import testing
from plasticity_rl import train
from plasticity_rl import workdir as workdir_lib
from plasticity_rl.agents import dqn
from plasticity_rl.analysis import load

REPO = pathlib.Path(__file__).resolve().parents[1]
_FLAGS = ["--config=configs/dqn.py:smoke", "--config.log.learning_curve=False", "--config.log.tensorboard=False"]


def _smoke_config():
  return testing.configs_module("dqn").get_config("smoke")


def _main_command(workdir, *overrides, script=None):
  """python -m plasticity_rl.main (or `script`, which patches something and then runs main) with smoke flags."""
  head = [sys.executable, str(script)] if script else [sys.executable, "-m", "plasticity_rl.main"]
  return [*head, *_FLAGS, f"--workdir={workdir}", *overrides]


def _main(env, workdir, *overrides, script=None, timeout=300):
  return subprocess.run(_main_command(workdir, *overrides, script=script), cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=timeout, check=False)


def _wrapper(tmp_path, name: str, patch: str) -> pathlib.Path:
  """A script that runs `patch` (Python) and then the CLI, as `python -m plasticity_rl.main` would."""
  path = tmp_path / f"{name}.py"
  path.write_text(f"import sys\nsys.path.insert(0, {str(REPO)!r})  # This checkout's package.\n{patch}\n"
                  "from plasticity_rl import main\nmain.run()\n")
  return path


def _errors(stderr: str) -> list[str]:
  """The failure's own lines: "error: …" and anything of a traceback (absl's I/W log lines are not counted)."""
  return [line for line in stderr.splitlines() if line.startswith("error:") or "Traceback" in line
          or line.startswith("Exception ignored")]


def _one_error_line(result, status: int = 2) -> str:
  assert result.returncode == status, result.stderr[-3000:]
  errors = _errors(result.stderr)
  assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr[-3000:]
  return errors[0]


# -- 1. one writer per workdir ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_second_process_on_a_workdir_is_refused_naming_the_holder(fake_run_env, tmp_path):
  """Two real processes: the second gets one line naming the first's pid (exit 2) and touches nothing."""
  workdir = tmp_path / "run"
  first = subprocess.Popen(_main_command(workdir), cwd=REPO, env=fake_run_env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
  try:
    lock = workdir / workdir_lib.LOCK_FILE
    assert testing.wait_for(lambda: lock.exists() and f"pid {first.pid} " in lock.read_text(), first, timeout=120)
    second = _main(fake_run_env, workdir)
    line = _one_error_line(second)
    assert f"workdir {workdir} is in use by pid {first.pid} " in line, line
    assert first.poll() is None  # The first was running all along.
  finally:
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=120)
  assert first.returncode == 128 + signal.SIGTERM, stderr[-3000:]
  assert not lock.exists()  # Released (a killed holder leaves the file, but the kernel drops its lock).
  assert [r["kind"] for r in recorder_lib.read_metrics(str(workdir))].count("run") == 1  # One writer wrote.


def test_workdir_lock_in_process(tmp_path):
  workdir = str(tmp_path / "run")
  with workdir_lib.lock_workdir(workdir):
    with pytest.raises(workdir_lib.WorkdirError, match=f"in use by pid {os.getpid()} "):
      workdir_lib.lock_workdir(workdir)  # Another open file: another writer, even in this process.
  assert not os.path.exists(workdir)  # Made by the lock and left empty: removed with it.
  config = _smoke_config()
  lock = workdir_lib.claim_workdir(workdir, config)
  assert sorted(os.listdir(workdir)) == [workdir_lib.LOCK_FILE, "config.json"]
  lock.close()
  assert sorted(os.listdir(workdir)) == ["config.json"]
  workdir_lib.claim_workdir(workdir, config).close()  # Same config: resumable, lock free again.


# -- 2. every saved byte checked ------------------------------------------------------------------------------


def _replay() -> replay_lib.ReplayBuffer:
  """Uniform random frames: incompressible, so flipped bytes reach the stored data as they are."""
  buffer = replay_lib.ReplayBuffer(400, 4, seed=3)
  rng = np.random.default_rng(0)
  for i in range(30):
    buffer.add(rng.integers(0, 256, (4, 84, 84), dtype=np.uint8), rng.integers(0, 6, 4), rng.normal(size=4),
               rng.random(4) < 0.05, np.zeros(4, bool), np.full(4, i == 0))
  return buffer


@pytest.fixture(scope="module")
def agent():
  return dqn.make_agent(_smoke_config(), num_actions=6)


def _save(directory, agent, steps=(16, 32), replay=None) -> None:
  checkpointer = checkpoint.Checkpointer(str(directory))
  state = agent.init(jax.random.key(0))
  for step in steps:
    checkpointer.save(step, state=state, keys={"act": jax.random.key(1)}, loop={"frames": step}, replay=replay,
                      config=_smoke_config())
  checkpointer.close()


def _largest_file(step_dir, item):
  return max(glob.glob(os.path.join(step_dir, item, "**", "*"), recursive=True), key=os.path.getsize)


def test_flipped_replay_bytes_fall_back_to_the_previous_checkpoint(tmp_path, agent, caplog):
  buffer = _replay()
  _save(tmp_path, agent, replay=buffer)
  victim = _largest_file(tmp_path / "32", "replay")
  with open(victim, "r+b") as f:
    f.seek(os.path.getsize(victim) // 2)
    data = f.read(16)
    f.seek(os.path.getsize(victim) // 2)
    f.write(bytes(b ^ 0xFF for b in data))
  with caplog.at_level(logging.WARNING):
    restored = checkpoint.Checkpointer(str(tmp_path)).restore(optimizer=agent.optimizer)
  assert restored.step == 16
  assert any(f"{tmp_path / '32'}/replay: the arrays read back differ" in r.getMessage() for r in caplog.records)
  np.testing.assert_array_equal(restored.replay["frames"], buffer.state_dict()["frames"])


def test_checkpoints_saved_before_the_replay_checksum_still_restore(tmp_path, agent):
  """Backward compatible: a checkpoint whose meta has no checksums.replay (as every one saved before) restores."""
  buffer = _replay()
  _save(tmp_path, agent, steps=(16,), replay=buffer)
  meta_path = tmp_path / "16" / "meta" / "metadata"
  meta = json.loads(meta_path.read_text())
  assert set(meta["checksums"]) == {"state", "opt_state", "replay"}
  del meta["checksums"]["replay"]
  meta_path.write_text(json.dumps(meta))
  restored = checkpoint.Checkpointer(str(tmp_path)).restore(optimizer=agent.optimizer)
  assert restored.step == 16
  np.testing.assert_array_equal(restored.replay["frames"], buffer.state_dict()["frames"])


def test_the_checksums_of_learner_arrays_are_unchanged(agent):
  """The strided replay is summed row by row; contiguous arrays give the CRC-32 they always had."""
  state = agent.init(jax.random.key(0))
  crc = 0
  for leaf in jax.tree.leaves(jax.device_get(state.params)):
    crc = zlib.crc32(np.ascontiguousarray(leaf).view(np.uint8).reshape(-1), crc)
  assert checkpoint.checksum(state.params) == crc
  view = _replay().state_dict()["frames"]
  assert not view.flags.c_contiguous
  assert checkpoint.checksum(view) == checkpoint.checksum(np.ascontiguousarray(view))


# -- 3. the analysis: rows written twice, negative frames -----------------------------------------------------


def _eval_workdir(path, rows, num_episodes=2):
  os.makedirs(path, exist_ok=True)
  config = json.loads(_smoke_config().to_json_best_effort())
  config["eval"]["num_episodes"] = num_episodes
  (path / "config.json").write_text(json.dumps(config))
  pd.DataFrame(rows, columns=recorder_lib.EVAL_COLUMNS).to_csv(path / "eval.csv", index=False)


def _rows(frames=(2000, 4000), returns=(-21.0, -20.0)):
  return [("Pong", "baseline", 0, f, r, 400) for f in frames for r in returns]


def test_rows_written_twice_within_one_file_are_caught(tmp_path):
  rows = _rows()
  _eval_workdir(tmp_path / "run", rows[:3] + rows[2:])  # The first 4,000-frame row twice: lines 4 and 5.
  with pytest.raises(load.AnalysisError, match=r"at 4,000 frames has 3 rows \(lines 4, 5, 6\).* says 2 "):
    load.load_results([str(tmp_path / "run")])
  _eval_workdir(tmp_path / "equal", [r[:4] + (-21.0, 400) for r in rows])  # Equal episodes are not duplicates.
  assert len(load.load_results([str(tmp_path / "equal")]).episodes) == 4
  tidy = tmp_path / "tidy.csv"
  pd.DataFrame(rows + rows[:1], columns=recorder_lib.EVAL_COLUMNS).to_csv(tidy, index=False)
  with pytest.warns(load.AnalysisWarning, match=r"at 2,000 frames are not together \(lines 2, 3, 6; 1 such"):
    load.load_results(csvs=[str(tidy)])  # Without a config.json: rows appended again are flagged.


def test_negative_frames_are_rejected(tmp_path):
  rows = _rows()
  rows[1] = rows[1][:3] + (-2000,) + rows[1][4:]
  _eval_workdir(tmp_path / "run", rows)
  with pytest.raises(load.AnalysisError, match=r"eval.csv: column 'frames' must be >= 0; negative at line 3"):
    load.load_results([str(tmp_path / "run")])


# -- 4. SIGTERM during start-up -------------------------------------------------------------------------------

_TERM_AT_STARTUP = """
import os, signal
from plasticity_rl import train
_enter = train.StopSignals.__enter__
def _enter_then_term(self):  # SIGTERM once the handler is installed, before the first step.
  out = _enter(self)
  os.kill(os.getpid(), signal.SIGTERM)
  return out
train.StopSignals.__enter__ = _enter_then_term
"""


def test_sigterm_during_startup_exits_143_with_nothing_half_written(fake_run_env, tmp_path):
  workdir = tmp_path / "run"
  result = _main(fake_run_env, workdir, script=_wrapper(tmp_path, "term", _TERM_AT_STARTUP))
  assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
  assert not _errors(result.stderr), result.stderr[-3000:]
  assert "stopped by SIGTERM at 0 frames" in result.stderr
  assert os.listdir(workdir / "checkpoints") == ["0"]  # Whole, no *.orbax-checkpoint-tmp.
  restored = checkpoint.Checkpointer(str(workdir / "checkpoints"), read_only=True).restore()
  assert restored.step == 0 and restored.replay is None  # An empty replay is not saved; the resume starts one.


# -- 5. a full disk -------------------------------------------------------------------------------------------

_DISK_FULL_AT_2000 = """
import orbax.checkpoint as ocp
_save, _wait, _close = ocp.CheckpointManager.save, ocp.CheckpointManager.wait_until_finished, ocp.CheckpointManager.close
def save(self, step, *args, **kwargs):  # The disk fills up while step 2000 is written (as orbax reports it).
  if step < 2000:
    return _save(self, step, *args, **kwargs)
  self._full = ValueError(f'RESOURCE_EXHAUSTED: Failed writing: "{self.directory}/{step}.orbax-checkpoint-tmp/'
                          'state/d/0": Failed to write 1634 bytes to file 8: No space left on device [os_error=28]')
  return True
def wait(self):
  _wait(self)
  if getattr(self, "_full", None):
    raise self._full
def close(self):
  wait(self)
  _close(self)
ocp.CheckpointManager.save, ocp.CheckpointManager.wait_until_finished, ocp.CheckpointManager.close = save, wait, close
"""


@pytest.mark.slow
def test_disk_full_is_one_line_and_leaves_no_row_for_the_failed_save(fake_run_env, tmp_path):
  workdir = tmp_path / "run"
  result = _main(fake_run_env, workdir, "--config.total_frames=2000", "--config.eval.period_frames=1000",
                 script=_wrapper(tmp_path, "full", _DISK_FULL_AT_2000))
  line = _one_error_line(result, status=1)
  assert f"checkpoint {workdir}/checkpoints/2000 was not saved: no space left on device (" in line, line
  assert " MB free on " in line and "the newest saved checkpoint is at 1,008 frames" in line, line
  assert "saving checkpoint @ 2,000" in result.stderr
  rows = recorder_lib.read_metrics(str(workdir))
  assert [r["frames"] for r in rows if r["kind"] == "checkpoint"] == [1008]
  assert max(r["frames"] for r in rows) == 1008  # As a resume from 1,008 frames finds them.
  assert {int(r["frames"]) for r in recorder_lib.read_eval(str(workdir))} == {1008}
  assert checkpoint.Checkpointer(str(workdir / "checkpoints"), read_only=True).restore().step == 1008


def test_a_failed_write_names_its_file(tmp_path, monkeypatch):
  recorder = recorder_lib.Recorder(str(tmp_path), tensorboard=False)

  def full(*_):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(recorder._metrics, "flush", full)
  with pytest.raises(OSError) as error:
    recorder.write(0, "train", {"loss": 1.0})
  assert error.value.filename == str(tmp_path / "metrics.jsonl") and workdir_lib.is_disk_full(error.value)


# -- 6. damaged bookkeeping files -----------------------------------------------------------------------------


def test_corrupt_config_json_names_its_line_and_resumes_from_a_matching_checkpoint(tmp_path):
  config = _smoke_config()
  workdir_lib.prepare_workdir(str(tmp_path), config)
  (tmp_path / "config.json").write_text('{\n "game": "Pong",\n garbage')
  meta = tmp_path / "checkpoints" / "1000" / "meta"
  meta.mkdir(parents=True)
  other = _smoke_config()
  other.seed = 5
  (meta / "metadata").write_text(json.dumps({"config": json.loads(other.to_json_best_effort())}))
  with pytest.raises(workdir_lib.WorkdirError,
                     match=r"config.json: not valid JSON \(line 3, column 2: .*\); the checkpoint .*1000 holds "
                           r"another config \(seed: 5 -> 0\)"):
    workdir_lib.prepare_workdir(str(tmp_path), config)
  (meta / "metadata").write_text(json.dumps({"config": json.loads(config.to_json_best_effort())}))
  workdir_lib.prepare_workdir(str(tmp_path), config)  # Its checkpoint says which config it ran: rebuilt.
  assert json.loads((tmp_path / "config.json").read_text()) == json.loads(config.to_json_best_effort())


def test_summary_json_is_written_atomically_and_a_torn_one_is_written_again(tmp_path, caplog):
  path = str(tmp_path / "summary.json")
  workdir_lib.write_json(path, {"frames": 1})
  with pytest.raises(TypeError):
    workdir_lib.write_json(path, {"frames": object()})  # Fails half-way through: the old file stays whole.
  assert json.loads(open(path).read()) == {"frames": 1} and os.listdir(tmp_path) == ["summary.json"]
  with open(path, "w") as f:
    f.write('{"game": "Pong", "fr')  # Torn, as the old non-atomic write could leave it.
  finished = types.SimpleNamespace(steps=lambda: [4000])
  with caplog.at_level(logging.WARNING):
    assert train.finished_summary(_smoke_config(), str(tmp_path), finished) is None  # So train() writes it again.
  assert any("summary.json: not valid JSON (line 1, column 18" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name, bad, where", [
    ("metrics.jsonl", "{not json}\n", "metrics.jsonl line 2: not a JSON row"),
    ("eval.csv", "Pong,baseline,0,lots,1.0,4\n", "eval.csv line 3: not a row of"),
], ids=["metrics.jsonl", "eval.csv"])
def test_a_damaged_log_line_is_named_and_a_torn_last_line_dropped(tmp_path, name, bad, where):
  recorder = recorder_lib.Recorder(str(tmp_path), tensorboard=False)
  recorder.write(100, "train", {"loss": 1.0})
  recorder.write_eval([{"game": "Pong", "variant": "baseline", "seed": 0, "frames": 100, "episode_return": 1.0,
                        "episode_frames": 4}])
  recorder.close()
  with open(tmp_path / name, "a") as f:
    f.write(bad)
  with pytest.raises(workdir_lib.WorkdirError, match=where):
    recorder_lib.Recorder(str(tmp_path), tensorboard=False, truncate_after_frames=100)
  lines = (tmp_path / name).read_text().splitlines()
  (tmp_path / name).write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:7])  # Now only cut by a kill.
  recorder_lib.Recorder(str(tmp_path), tensorboard=False, truncate_after_frames=100).close()
  assert [r["frames"] for r in recorder_lib.read_metrics(str(tmp_path))] == [100]
  assert [r["frames"] for r in recorder_lib.read_eval(str(tmp_path))] == ["100"]


# -- 7. validation gaps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case, args, says", [
    ("width inf", ["--config.network.width=inf"], "error: config.network.width: must be a finite number > 0"),
    ("seed -1", ["--config.seed=-1"], "error: config.seed: must be in [0, 2**32 - num_seeds], got -1"),
    ("syntax error", ["--config={dir}/syntax.py"], "error: --config file {dir}/syntax.py line 1: SyntaxError"),
    ("get_config raises", ["--config={dir}/raises.py"], "error: --config file {dir}/raises.py line 3: KeyError: 'x'"),
    ("missing file", ["--config={dir}/nope.py"], "error: --config file {dir}/nope.py: no such file"),
    ("stray argument", ["extra"], "error: unexpected argument(s) ['extra']"),
], ids=["width-inf", "seed-negative", "syntax-error", "get_config-raises", "missing-file", "stray-argument"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(fake_run_env, tmp_path, case, args, says):
  del case
  (tmp_path / "syntax.py").write_text("def get_config(:\n")
  (tmp_path / "raises.py").write_text("def get_config(arg=None):\n  fields = {}\n  return fields['x']\n")
  workdir = tmp_path / "run"
  result = _main(fake_run_env, workdir, *[a.format(dir=tmp_path) for a in args], timeout=120)
  assert _one_error_line(result).startswith(says.format(dir=tmp_path)), result.stderr
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert not workdir.exists()


# -- 8. unreadable checkpoints --------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # Before quiet_orbax_logs.
def test_unreadable_checkpoints_are_one_line_each(tmp_path, agent, caplog):
  _save(tmp_path, agent)
  for step in ("16", "32"):
    victim = _largest_file(tmp_path / step, "state")
    with open(victim, "r+b") as f:
      f.truncate(os.path.getsize(victim) // 2)
  with caplog.at_level(logging.WARNING), pytest.raises(checkpoint.CheckpointError) as error:
    checkpoint.Checkpointer(str(tmp_path)).restore(optimizer=agent.optimizer)
  warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
  assert len(warnings) == 2 and all("\n" not in w and len(w) < 600 for w in warnings), warnings
  assert "TensorStore" not in warnings[0] and "OUT_OF_RANGE" in warnings[0], warnings[0]
  message = str(error.value)
  assert "\n" not in message and len(message) < 1200, message
  assert message.startswith(f"no readable checkpoint in {tmp_path} ({tmp_path / '32'}: ValueError: "), message


def test_leftover_callbacks_of_a_failed_read_print_nothing(monkeypatch):
  printed = []
  monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: printed.append(unraisable.exc_value))
  checkpoint.quiet_orbax_logs()

  def unraisable(error):
    return types.SimpleNamespace(exc_type=type(error), exc_value=error, exc_traceback=None, err_msg=None,
                                 object=None)

  sys.unraisablehook(unraisable(RuntimeError("Event loop is closed")))
  sys.unraisablehook(unraisable(RuntimeError("cannot schedule new futures after interpreter shutdown")))
  other = ValueError("something else")
  sys.unraisablehook(unraisable(other))
  assert printed == [other]  # Only the failed read's leftovers are dropped.


# -- 9. a failed reincarnation writes nothing -----------------------------------------------------------------


def test_failed_reincarnation_writes_nothing(fake_run_env, tmp_path):
  source = tmp_path / "not_a_run"
  source.mkdir()
  workdir = tmp_path / "student"
  result = _main(fake_run_env, workdir, f"--config.reincarnate.path={source}", timeout=120)
  line = _one_error_line(result)
  assert f"reincarnate.path {source}: not a workdir with checkpoints/" in line, line
  assert not workdir.exists()  # So the corrected command on this workdir is not refused.


# -- the end-to-end resume of a damaged summary.json ----------------------------------------------------------


@pytest.mark.slow
def test_finished_run_with_a_torn_summary_writes_it_again(tmp_path, fake_envpool):
  config = _smoke_config()
  config.total_frames, config.eval.period_frames, config.checkpoint.period_frames = 1200, 1200, 0
  config.log.tensorboard = config.log.learning_curve = False
  workdir = str(tmp_path / "run")
  workdir_lib.prepare_workdir(workdir, config)
  summary = train.train(config, workdir)
  path = os.path.join(workdir, "summary.json")
  with open(path, "r+") as f:
    f.truncate(20)
  again = train.train(config, workdir)  # From the final checkpoint: no training, the same summary.
  plain = lambda s: json.loads(json.dumps({k: v for k, v in s.items() if k != "wall_seconds"}))
  assert plain(again) == plain(summary) and plain(json.loads(open(path).read())) == plain(summary)
  assert [r["kind"] for r in recorder_lib.read_metrics(workdir)].count("resume") == 1
