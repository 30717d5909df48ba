"""No setting is silently ignored: the general guard.

Smoke runs (in-process, through main's runner, on the fake envpool: which fields a run reads does not depend on
the game) record every config field they read. A field that a run
never reads computes nothing in that run; the guard asserts that setting any such field away from its default is
refused by `config.validate`, with one line naming it (config.refuse_inactive and the checks beside it). The
scenarios together switch every optional part on, so every field is read by at least one of them: a field that
no run reads is dead and fails here too. A new field is covered without a test of its own.
"""

import collections
import contextlib
import dataclasses

import pytest
from ml_collections import config_dict

from plasticity_rl import config as config_lib
from plasticity_rl import main
from plasticity_rl import metrics
from plasticity_rl import testing

# Fields whose effect is outside one training process, with the reason they cannot be read by a run.
OUTSIDE_A_RUN = {
    "variant": "a label written into every result row (read when rows are written; checked by check_variant_label)",
    # With one seed the loop is the single-seed one, and a multi-seed loop of one seed computes the same either
    # way (test_multi_seed); scripts/benchmark.py times N = 1 rows of both batchings.
    "seed_batching": "how the learner batches seeds: the same results for one seed",
}


@contextlib.contextmanager
def recording_reads():
  """Records (id(ConfigDict), key) of every item read from any ConfigDict while active."""
  reads = collections.defaultdict(set)
  original = config_dict.ConfigDict.__getitem__

  def getitem(self, key):
    reads[id(self)].add(key)
    return original(self, key)

  config_dict.ConfigDict.__getitem__ = getitem
  try:
    yield reads
  finally:
    config_dict.ConfigDict.__getitem__ = original


@contextlib.contextmanager
def metric_names_memoized(monkeypatch):
  """metrics.metric_names once per agent (its optimizer aside: names come from the network and the loss) while
  active. `config.validate` traces the metrics call (~0.5 s of CPU) for every config with a metric trigger or the
  adaptive replay ratio; the guard validates one config per unread field, most of them with the same agent."""
  original, names = metrics.metric_names, {}

  def memoized(agent, *args, **kwargs):
    key = (repr(dataclasses.replace(agent, optimizer=None)), args, tuple(sorted(kwargs.items())))
    if key not in names:
      names[key] = original(agent, *args, **kwargs)
    return list(names[key])

  with monkeypatch.context() as patch:
    patch.setattr(metrics, "metric_names", memoized)
    yield names


def leaf_paths(c, prefix=""):
  for key, value in c.items():
    if isinstance(value, config_dict.ConfigDict):
      yield from leaf_paths(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", c, key


def unread_fields(config, workdir) -> set[str]:
  config_lib.validate(config)  # Validation reads everything it checks: not counted.
  with recording_reads() as reads:
    main._run(config, str(workdir))
  return {path for path, parent, key in leaf_paths(config) if key not in reads[id(parent)]}


def _smoke(**overrides):
  config = testing.configs_module("dqn").get_config("smoke")
  config.total_frames = 2_000
  config.eval.period_frames = 2_000
  for field, value in overrides.items():
    section, _, name = field.rpartition(".")
    (config_lib.eval_field(config, section) if section else config)[name] = value
  return config


SCENARIOS = {
    "baseline": {},
    "interventions": {"injection.frames": (1_500,), "injection.hidden": (96,), "injection.reset_optimizer": True,
                      "injection.trigger.metric": "dormant_0.1/head/dense_0", "injection.trigger.threshold": 2.0,
                      "network.activation": "crelu", "regularizer.kind": "l2", "regularizer.schedule": "incremental",
                      "reset.frames": (1_600,), "redo.period_frames": 1_200, "shrink_perturb.frames": (1_800,)},
    "schedules": {"learner.adaptive_replay_ratio.enabled": True, "regularizer.kind": "l2_init",
                  "expansion.enabled": True},
    # W&B offline (WANDB_MODE below). Hare & Tortoise here: it refuses injection, expansion and reincarnation.
    "outputs": {"eval.record_video": True, "log.wandb": True, "hare_tortoise.enabled": True,
                "hare_tortoise.frames": (1_500,)},
    "device": {"loop.backend": "device"},  # The device path (device_loop.py): loop.chunk_steps acts.
}


def _perturbed(value):
  if isinstance(value, bool):
    return not value
  if isinstance(value, int):
    return value * 2 + 1
  if isinstance(value, float):
    return value * 0.5 + 0.01
  if isinstance(value, str):
    return value + "_x"
  if isinstance(value, tuple):
    return (*value, 1_000) if not value else ()
  return 1


@pytest.mark.slow
def test_every_field_a_run_does_not_read_is_refused_and_every_field_is_read_somewhere(tmp_path, monkeypatch,
                                                                                      fake_envpool):
  for name in ("DIR", "CONFIG_DIR", "CACHE_DIR", "DATA_DIR"):
    monkeypatch.setenv(f"WANDB_{name}", str(tmp_path / f"wandb_{name.lower()}"))
  monkeypatch.setenv("WANDB_MODE", "offline")
  unread_by_scenario = {}
  scenarios = {**SCENARIOS, "reincarnated": {"reincarnate.path": str(tmp_path / "baseline"),
                                             "reincarnate.load": "params+optimizer", "regularizer.kind": "l2",
                                             "regularizer.schedule": "periodic"}}
  for name, overrides in scenarios.items():
    config = _smoke(**overrides)
    unread_by_scenario[name] = (config, unread_fields(config, tmp_path / name))
  never_read = set.intersection(*(u for _, u in unread_by_scenario.values())) - set(OUTSIDE_A_RUN)
  assert not never_read, f"fields no run reads (dead): {sorted(never_read)}"
  silently_ignored = []
  with metric_names_memoized(monkeypatch):
    for name, (config, unread) in unread_by_scenario.items():
      for field in sorted(unread - set(OUTSIDE_A_RUN)):
        perturbed = _smoke(**scenarios[name])
        section, _, key = field.rpartition(".")
        (config_lib.eval_field(perturbed, section) if section else perturbed)[key] = _perturbed(
            config_lib.eval_field(config, field))
        try:
          config_lib.validate(perturbed)
        except config_lib.ConfigError as error:
          assert "\n" not in str(error), str(error)
          continue
        silently_ignored.append(f"{name}: {field}")
  assert not silently_ignored, f"accepted but never read by the run: {silently_ignored}"


def test_inactive_fields_are_refused_with_the_switch_named():
  for field, value, switch in (("learner.adaptive_replay_ratio.high", 0.5, "adaptive_replay_ratio.enabled is False"),
                               ("network.crelu_halve_width", False, "not 'crelu'"),
                               ("regularizer.coef", 1e-3, "regularizer.kind is 'none'"),
                               ("reincarnate.load", "all", "reincarnate.path is empty"),
                               ("redo.tau", 0.0, "redo is not scheduled"),
                               ("injection.target", "last_k:1", "no injection is scheduled")):
    config = _smoke()
    section, _, key = field.rpartition(".")
    (config_lib.eval_field(config, section) if section else config)[key] = value
    with pytest.raises(config_lib.ConfigError, match=f"^config.{field}: .*has no effect while .*{switch}"):
      config_lib.validate(config)
  config = _smoke(**{"regularizer.kind": "l2", "regularizer.coef": 1e-3})  # Switched on: accepted.
  config_lib.validate(config)
