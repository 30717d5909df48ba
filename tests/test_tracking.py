"""Provenance (provenance.py), the Recorder's writers (TensorBoard, Weights & Biases offline) and evaluation videos."""

import glob
import json
import logging
import os
import pathlib
import shutil
import struct
import sys
import warnings

import imageio.v2 as imageio
import jax
import pytest

from plasticity_rl import config as config_lib
from plasticity_rl import main
from plasticity_rl import provenance
from plasticity_rl import recorder as recorder_lib
from plasticity_rl import testing
from plasticity_rl import video

REPO = pathlib.Path(__file__).resolve().parents[1]


def _smoke(**fields):
  config = testing.configs_module("dqn").get_config("smoke")
  config.log.learning_curve = False
  config.metrics.period_frames = 0  # Not what these tests check: saves compiling them.
  for field, value in fields.items():
    section, _, name = field.rpartition(".")
    (config_lib.eval_field(config, section) if section else config)[name] = value
  return config


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
  """W&B offline and silent, with every directory it writes under tmp_path."""
  for name in ("DIR", "CONFIG_DIR", "CACHE_DIR", "DATA_DIR", "ARTIFACT_DIR"):
    monkeypatch.setenv(f"WANDB_{name}", str(tmp_path / f"wandb_{name.lower()}"))
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")


def wandb_history(run_dir: str) -> list[dict]:
  """The logged rows ({key: value}) of an offline W&B run dir, read from its run-<id>.wandb file (a LevelDB-style
  log: a 7-byte header, then 32 KiB blocks of records with a 7-byte header each (CRC, length, type), whose
  payloads are wandb_internal_pb2.Record protobufs)."""
  from wandb.proto import wandb_internal_pb2  # pylint: disable=g-import-not-at-top
  [path] = glob.glob(os.path.join(run_dir, "run-*.wandb"))
  data = pathlib.Path(path).read_bytes()
  assert data[:4] == b":W&B"
  rows, pos, payload, block = [], 7, b"", 32768
  while pos + 7 <= len(data):
    left = block - pos % block
    _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
    if left < 7 or (length == 0 and kind == 0):  # Block padding.
      pos += left
      continue
    payload, pos = payload + data[pos + 7:pos + 7 + length], pos + 7 + length
    if kind in (1, 4):  # FULL or LAST.
      record = wandb_internal_pb2.Record()
      record.ParseFromString(payload)
      payload = b""
      if record.WhichOneof("record_type") == "history":
        rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                     for item in record.history.item})
  return rows


# -- provenance -------------------------------------------------------------------------------------------------


def test_collect_records_commit_versions_devices_and_host():
  p = provenance.collect()
  assert p["versions"]["jax"] == jax.__version__ and p["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
  assert set(provenance.PACKAGES) <= set(p["versions"])
  assert p["devices"] == {"backend": jax.default_backend(), "kind": jax.devices()[0].device_kind,
                          "count": jax.device_count()}
  head = REPO / ".git"
  if head.exists():  # A checkout: the commit is HEAD's.
    assert len(p["git_commit"]) == 40 and isinstance(p["git_dirty"], bool)
  json.dumps(p)  # Plain JSON.


def test_git_state_is_none_outside_a_checkout(tmp_path, monkeypatch):
  monkeypatch.setattr(provenance, "__file__", str(tmp_path / "provenance.py"))
  assert provenance.git_state() == (None, None)


def test_compare_names_each_change():
  old = {"git_commit": "a" * 40, "git_dirty": False, "versions": {"jax": "0.9.0", "numpy": "2.0"},
         "devices": {"backend": "cpu", "kind": "cpu", "count": 1}, "host": "a"}
  new = json.loads(json.dumps(old))
  assert provenance.compare(old, new) == []
  new["versions"]["jax"], new["git_commit"], new["devices"]["count"] = "0.10.0", "b" * 40, 2
  assert provenance.compare(old, new) == ["commit aaaaaaaaaaaa -> bbbbbbbbbbbb", "device count 1 -> 2",
                                          "jax 0.9.0 -> 0.10.0"]
  newer = {**json.loads(json.dumps(old)), "env_backend": "envpool"}  # Recorded since: not a change for old runs.
  assert provenance.compare(old, newer) == []
  assert provenance.compare({**old, "env_backend": "envpool"}, {**old, "env_backend": "fake_envpool"}) == [
      "env backend envpool -> fake_envpool"]


def test_provenance_names_the_env_backend(monkeypatch):
  monkeypatch.delenv("PLASTICITY_RL_FAKE_ENVPOOL", raising=False)
  assert provenance.collect()["env_backend"] == "envpool"
  monkeypatch.setenv("PLASTICITY_RL_FAKE_ENVPOOL", "1")
  assert provenance.collect()["env_backend"] == "fake_envpool"


def test_a_resume_under_other_versions_warns_once_naming_them(tmp_path, caplog):
  workdirs = [str(tmp_path / f"seed_{i}") for i in range(2)]
  for workdir in workdirs:
    os.makedirs(workdir)
  first = provenance.start(workdirs, resumed=False)
  with caplog.at_level(logging.WARNING):
    provenance.start(workdirs, resumed=True)  # Same setup, another host would not warn either.
  assert not caplog.records
  for workdir in workdirs:  # As if the previous process ran under an older jax, on another host.
    old = dict(first, host="elsewhere", versions={**first["versions"], "jax": "0.0.1"})
    pathlib.Path(workdir, provenance.FILE).write_text(json.dumps(old))
  with caplog.at_level(logging.WARNING):
    new = provenance.start(workdirs, resumed=True)
  [record] = caplog.records
  assert record.getMessage() == (f"resuming {tmp_path} under a different setup: jax 0.0.1 -> {jax.__version__}")
  assert all(json.loads(pathlib.Path(w, provenance.FILE).read_text()) == new for w in workdirs)


# -- the writers ------------------------------------------------------------------------------------------------


class _ListWriter:
  def __init__(self):
    self.rows, self.closed = [], False

  def scalars(self, frames, values):
    self.rows.append((frames, dict(values)))

  def flush(self):
    pass

  def close(self):
    self.closed = True


def test_recorder_sends_each_rows_numbers_to_every_writer(tmp_path):
  writers = [_ListWriter(), _ListWriter()]
  recorder = recorder_lib.Recorder(str(tmp_path), tensorboard=False, writers=writers)
  recorder.write(0, "provenance", {"versions": {"jax": "x"}, "git_dirty": True, "host": "h"})  # No numbers.
  recorder.write(100, "train", {"loss": 0.5, "updates": 3, "name": "x", "flag": True})
  recorder.close()
  for writer in writers:
    assert writer.rows == [(100, {"train/loss": 0.5, "train/updates": 3})] and writer.closed
  assert [r["kind"] for r in recorder_lib.read_metrics(str(tmp_path))] == ["provenance", "train"]


# -- config ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, switch", [
    ("log.wandb_project", "mine", "log.wandb is False"), ("log.wandb_mode", "online", "log.wandb is False"),
    ("eval.video_frames", (1_000,), "eval.record_video is False"),
    ("eval.video_episodes", 2, "eval.record_video is False")])
def test_output_options_without_their_switch_are_refused(field, value, switch):
  with pytest.raises(config_lib.ConfigError, match=f"^config.{field}: .*has no effect while {switch}"):
    config_lib.validate(_smoke(**{field: value}))


@pytest.mark.parametrize("fields, message", [
    ({"eval.video_episodes": 3}, r"^config.eval.video_episodes: must be in \[1, 2\]"),
    ({"eval.video_frames": (5_000,)}, r"^config.eval.video_frames: 5000 is not in \(0, total_frames = 4000\]"),
    ({"eval.final_num_episodes": 1}, r"^config.eval.video_episodes: must be in \[1, 1\]")])
def test_bad_video_fields_are_refused(fields, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(_smoke(**{"eval.record_video": True, "eval.video_episodes": 2, **fields}))


def test_wandb_fields_are_checked_and_a_missing_wandb_is_one_line(monkeypatch):
  with pytest.raises(config_lib.ConfigError, match=r"^config.log.wandb_mode: unknown 'onlin'; allowed"):
    config_lib.validate(_smoke(**{"log.wandb": True, "log.wandb_mode": "onlin"}))
  monkeypatch.setitem(sys.modules, "wandb", None)  # As if not installed.
  with pytest.raises(config_lib.ConfigError) as error:
    config_lib.validate(_smoke(**{"log.wandb": True}))
  assert str(error.value).startswith("config.log.wandb: True needs the wandb package") and "\n" not in str(error.value)


# -- runs --------------------------------------------------------------------------------------------------------


def _check_videos(workdir, frames: int, episodes: int):
  """The MP4s of the evaluation at `frames`: one per episode, each with the episode's agent steps + 1 images."""
  rows = [r for r in recorder_lib.read_eval(workdir) if int(r["frames"]) == frames]
  for k in range(episodes):
    with warnings.catch_warnings():  # JAX's warning of a fork (ffmpeg's, exec'd at once).
      warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
      images = list(imageio.get_reader(video.video_path(workdir, frames, k)).iter_data())
    assert len(images) == int(rows[k]["episode_frames"]) // 4 + 1
    assert images[0].shape == (210, 160, 3)  # The full RGB screen.


@pytest.mark.slow
def test_a_run_records_provenance_wandb_and_videos_and_a_resume_warns(tmp_path, wandb_env, caplog):
  """A smoke run with W&B and videos (at the evaluation at or after 1,000 frames), killed after its checkpoint at
  1,008 frames (its final checkpoint and summary removed) and resumed under a provenance.json that names an older
  jax and another commit."""
  config = _smoke(**{"total_frames": 1_200, "eval.period_frames": 1_000, "log.wandb": True,
                     "eval.record_video": True, "eval.video_frames": (1_000,), "eval.video_episodes": 2})
  config_lib.validate(config)
  workdir = str(tmp_path / "run")
  main._run(config, workdir)
  evaluated = sorted({int(r["frames"]) for r in recorder_lib.read_eval(workdir)})
  first_eval = evaluated[0]
  assert os.listdir(os.path.join(workdir, "videos")) and sorted(os.listdir(os.path.join(workdir, "videos"))) == [
      f"{first_eval}_ep0.mp4", f"{first_eval}_ep1.mp4"]  # Not the final evaluation's.
  _check_videos(workdir, first_eval, 2)

  shutil.rmtree(os.path.join(workdir, "checkpoints", str(config.total_frames)))
  os.remove(os.path.join(workdir, "summary.json"))
  before = json.loads(pathlib.Path(workdir, provenance.FILE).read_text())
  pathlib.Path(workdir, provenance.FILE).write_text(json.dumps(
      dict(before, git_commit="0" * 40, versions={**before["versions"], "jax": "0.0.1"})))
  with caplog.at_level(logging.WARNING):
    [summary] = main._run(config, workdir)
  warnings = [r.getMessage() for r in caplog.records if "under a different setup" in r.getMessage()]
  commit = (before["git_commit"] or "None")[:12]
  assert warnings == [f"resuming {workdir} under a different setup: commit 000000000000 -> {commit}, "
                      f"jax 0.0.1 -> {jax.__version__}"]

  rows = recorder_lib.read_metrics(workdir)
  assert rows[0]["kind"] == "provenance" and rows[0]["frames"] == 0
  resume = next(i for i, r in enumerate(rows) if r["kind"] == "resume")
  assert rows[resume - 1]["kind"] == "provenance" and rows[resume - 1]["frames"] == rows[resume]["frames"]
  assert summary["provenance"] == json.loads(pathlib.Path(workdir, provenance.FILE).read_text()) == {
      k: v for k, v in rows[resume - 1].items() if k not in ("frames", "kind")}
  assert summary["provenance"]["versions"]["jax"] == jax.__version__
  assert "provenance" not in json.loads(pathlib.Path(workdir, "config.json").read_text())

  run_dirs = sorted(glob.glob(os.path.join(workdir, "wandb", "offline-run-*")))
  run_id = pathlib.Path(workdir, "wandb", "run_id").read_text().strip()
  assert len(run_dirs) == 2 and all(d.endswith(f"-{run_id}") for d in run_dirs)  # The resume continues the run.
  history = [row for d in run_dirs for row in wandb_history(d)]
  assert any("train/loss" in row for row in history)
  logged_evals = {row["frames"]: row["eval/episode_return_mean"] for row in history if "eval/episode_return_mean" in row}
  assert logged_evals == {r["frames"]: r["episode_return_mean"] for r in rows if r["kind"] == "eval"}


@pytest.mark.slow
def test_a_multi_seed_run_records_provenance_wandb_and_videos_per_seed(tmp_path, wandb_env, fake_envpool):
  """Per seed, on the fake envpool (its screens have envpool's shape; the single-seed test records real ones)."""
  config = _smoke(**{"total_frames": 1_200, "eval.period_frames": 1_200, "num_seeds": 2, "log.wandb": True,
                     "eval.record_video": True})
  config_lib.validate(config)
  summaries = main._run(config, str(tmp_path / "seeds"))
  for summary in summaries:
    workdir = str(tmp_path / "seeds" / f"seed_{summary['seed']}")
    assert os.listdir(os.path.join(workdir, "videos")) == [f"{summary['frames']}_ep0.mp4"]  # The final evaluation.
    _check_videos(workdir, summary["frames"], 1)
    assert recorder_lib.read_metrics(workdir)[0]["kind"] == "provenance"
    assert summary["provenance"] == json.loads(pathlib.Path(workdir, provenance.FILE).read_text())
    [run_dir] = glob.glob(os.path.join(workdir, "wandb", "offline-run-*"))
    assert any("eval/episode_return_mean" in row for row in wandb_history(run_dir))
