"""Tests for config validation (plasticity_rl.config) and the command line's errors (plasticity_rl.main)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from plasticity_rl import config as config_lib
from plasticity_rl import testing
from plasticity_rl import workdir as workdir_lib

REPO = pathlib.Path(__file__).resolve().parents[1]


def _get_config(arg: str | None = None):
  return testing.configs_module("dqn").get_config(arg)


def _set(config, field: str, value) -> None:
  *parents, leaf = field.split(".")
  for part in parents:
    config = config[part]
  config[leaf] = value


# -- validate -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arg", [None, "cpu", "smoke"])
def test_shipped_configs_validate(arg):
  config_lib.validate(_get_config(arg))


def test_validate_canonicalizes_the_game():
  config = _get_config("smoke")
  config.game = "pong-v5"
  config_lib.validate(config)
  assert config.game == "Pong"


@pytest.mark.parametrize("field, value, mentions", [
    ("game", "Pongg", "Pong"),
    ("total_frames", -1, "-1"),
    ("total_frames", 0, "> 0"),
    ("learner.batch_size", 5_000, "replay.capacity"),  # The smoke replay holds 4,000.
    ("learner.replay_ratio", 0.0, "> 0"),
    ("env.protocol", "atari200k", "dqn_zoo"),
    ("eval.protocol", "nature", "machado"),
    ("learner.optimizer", "sgd", "rmsprop_dqn_zoo"),
    ("learner.learning_rate", -1e-4, "> 0"),
    ("learner.gamma", 1.5, "[0, 1]"),
    ("network.activation", "tanh", "crelu"),
    ("network.width", 0.0, "> 0"),
    ("exploration.epsilon_end", 2.0, "[0, 1]"),
    ("env.num_envs", 0, "> 0"),
    ("replay.learning_starts_frames", 8_000, "total_frames"),
    ("eval.protocol", "machado", "18 actions"),  # Pong: 6 actions under env.protocol dqn_zoo.
])
def test_validate_names_the_bad_field(field, value, mentions):
  config = _get_config("smoke")
  _set(config, field, value)
  with pytest.raises(config_lib.ConfigError) as error:
    config_lib.validate(config)
  message = str(error.value)
  assert message.startswith(f"config.{field}:"), message
  assert mentions in message, message


def test_mixed_protocols_with_one_action_set_validate():
  config = _get_config("smoke")
  config.game, config.eval.protocol = "Alien", "machado"  # Alien's minimal action set is the full one.
  config_lib.validate(config)


def test_config_error_is_a_value_error():
  assert issubclass(config_lib.ConfigError, ValueError)


# -- the workdir ----------------------------------------------------------------------------------------------


def _validated_smoke(**fields):
  config = _get_config("smoke")
  for field, value in fields.items():
    _set(config, field.replace("__", "."), value)
  config_lib.validate(config)
  return config


def test_prepare_workdir_writes_config_and_accepts_the_same_config(tmp_path):
  workdir = tmp_path / "run"
  config = _validated_smoke()
  workdir_lib.prepare_workdir(str(workdir), config)
  assert json.loads((workdir / "config.json").read_text())["game"] == "Pong"
  workdir_lib.prepare_workdir(str(workdir), _validated_smoke())  # Same config: accepted (resume).


def test_prepare_workdir_refuses_another_config_naming_the_field(tmp_path):
  workdir_lib.prepare_workdir(str(tmp_path), _validated_smoke())
  before = (tmp_path / "config.json").read_text()
  with pytest.raises(workdir_lib.WorkdirError) as error:
    workdir_lib.prepare_workdir(str(tmp_path), _validated_smoke(learner__batch_size=16))
  assert "learner.batch_size: 8 -> 16" in str(error.value)
  assert (tmp_path / "config.json").read_text() == before


def test_prepare_workdir_refuses_a_foreign_non_empty_dir(tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  with pytest.raises(workdir_lib.WorkdirError, match="not empty"):
    workdir_lib.prepare_workdir(str(tmp_path), _validated_smoke())
  assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


# -- the command line -----------------------------------------------------------------------------------------


def _main(workdir, *flags: str, timeout: float = 120) -> subprocess.CompletedProcess:
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.run(
      [sys.executable, "-m", "plasticity_rl.main", "--config=configs/dqn.py:smoke", f"--workdir={workdir}", *flags],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize("flag, field", [
    ("--config.learner.foo=1", "learner.foo"),  # Unknown field.
    ("--config.total_frames=abc", "total_frames"),  # Wrong type.
    ("--config.game=Pongg", "config.game"),  # Bad value.
    ("--config.learner.replay_ratio=0", "config.learner.replay_ratio"),
])
def test_cli_rejects_bad_config_with_a_short_message(tmp_path, flag, field):
  workdir = tmp_path / "run"
  result = _main(workdir, flag)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr, result.stderr
  assert field in result.stderr, result.stderr
  assert len(result.stderr.splitlines()) < 40, result.stderr
  assert not workdir.exists()


def test_cli_refuses_a_workdir_made_with_another_config(tmp_path):
  workdir_lib.prepare_workdir(str(tmp_path), _validated_smoke(seed=1))
  before = (tmp_path / "config.json").read_text()
  result = _main(tmp_path)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr, result.stderr
  assert "seed: 1 -> 0" in result.stderr, result.stderr
  assert len(result.stderr.splitlines()) < 40, result.stderr
  assert sorted(os.listdir(tmp_path)) == ["config.json"]
  assert (tmp_path / "config.json").read_text() == before


@pytest.mark.parametrize("field, value, loss, mentions", [
    ("learner.huber_delta", 1.0, "dqn_zoo", "learner.loss='huber'"),  # Would be silently ignored.
    ("learner.grad_error_bound", 0.05, "huber", "learner.loss='dqn_zoo'"),
    ("learner.huber_delta", -1.0, "huber", "> 0"),
    ("learner.loss", "l1", "l1", "allowed"),
    ("network.initializer", "orthogonal", "dqn_zoo", "xavier_uniform"),
    ("network.conv_padding", "CIRCULAR", "dqn_zoo", "SAME"),
    ("eval.final_num_episodes", -1, "dqn_zoo", "≥ 0"),
])
def test_loss_and_network_fields_are_applied_or_refused(field, value, loss, mentions):
  config = _get_config("smoke")
  config.learner.loss = loss
  _set(config, field, value)
  with pytest.raises(config_lib.ConfigError) as error:
    config_lib.validate(config)
  assert str(error.value).startswith(f"config.{field}:"), str(error.value)
  assert mentions in str(error.value), str(error.value)


def test_a_variant_label_must_describe_the_run():
  config = _get_config("smoke")
  config.variant = "inject@2k"  # A plain run labelled as an injection run.
  with pytest.raises(config_lib.ConfigError, match=r"^config.variant: 'inject@2k' is the sweep variant that sets "
                     r"injection.frames \(this run: the default \(\)\)"):
    config_lib.validate(config)
  config.injection.frames = (2_000,)
  config_lib.validate(config)  # Now it is one.
  paper = config_lib.base_config()
  paper.variant = "inject@50M"
  paper.injection.frames = (60_000_000,)  # At paper scale the variant's frames are exact.
  with pytest.raises(config_lib.ConfigError, match=r"injection.frames=\(50000000,\) \(this run: \(60000000,\)\)"):
    config_lib.validate(paper)
  paper.injection.frames = (50_000_000,)
  config_lib.validate(paper)
  config.variant = "my experiment"  # Free text names no variant.
  config_lib.validate(config)


def test_injection_hidden_with_an_output_only_target_is_refused():
  config = _get_config("smoke")
  config.injection.frames, config.injection.hidden, config.injection.target = (2_000,), (128,), "dense_1"
  with pytest.raises(config_lib.ConfigError, match="config.injection: .*no hidden units to grow"):
    config_lib.validate(config)


def test_a_reincarnated_run_refuses_a_network_override(tmp_path):
  source = tmp_path / "source"
  source.mkdir()
  saved = _get_config("smoke")
  (source / "config.json").write_text(saved.to_json_best_effort())
  (source / "checkpoints" / "4000").mkdir(parents=True)
  config = _get_config("smoke")
  config.network.hidden = 128  # The saved head has 64 units: it would train those and record 128.
  for path in (source, source / "checkpoints" / "4000"):
    config.reincarnate.path = str(path)
    with pytest.raises(config_lib.ConfigError, match=r"^config.network.hidden: 128, but the reincarnated agent"):
      config_lib.validate(config)
  config.network.hidden = 64
  config_lib.validate(config)


def test_adaptive_replay_ratio_refuses_what_it_would_silently_override():
  config = _get_config("smoke")
  config.learner.adaptive_replay_ratio.enabled = True
  config_lib.validate(config)  # replay_ratio = high (0.25): the ratio of the high phase.
  config.learner.replay_ratio = 0.5
  with pytest.raises(config_lib.ConfigError, match="^config.learner.replay_ratio: 0.5 is not used while"):
    config_lib.validate(config)
  config.learner.replay_ratio = config.learner.adaptive_replay_ratio.high
  config.regularizer.kind, config.regularizer.schedule = "l2", "periodic"
  with pytest.raises(config_lib.ConfigError, match="^config.regularizer.schedule: 'periodic' counts its frames"):
    config_lib.validate(config)


def test_a_workdir_resumes_across_schema_growth_and_changed_defaults_of_parts_that_are_off(tmp_path):

  config = _get_config("smoke")
  config_lib.validate(config)
  old = json.loads(config.to_json_best_effort())
  del old["network"]["dueling"]  # A field added since the run started (at its old behaviour).
  old["regularizer"]["on_frames"] = 10_000_000  # A default changed since, for a part that is off.
  (tmp_path / "config.json").write_text(json.dumps(old))
  workdir_lib.check_workdir(str(tmp_path), config)  # Resumes.
  old["learner"]["gamma"] = 0.9  # An active field: another run.
  (tmp_path / "config.json").write_text(json.dumps(old))
  with pytest.raises(workdir_lib.WorkdirError, match=r"learner.gamma: 0.9 -> 0.99\)"):
    workdir_lib.check_workdir(str(tmp_path), config)
