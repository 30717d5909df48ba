"""The loop calls every intervention's loop hooks, knowing none by name: one class (what a new module of
plasticity_rl/interventions/ holds) sets the replay ratio, reacts to metrics with an event and a surgery, sees
each surgery first, and keeps a loop state that the checkpoint saves."""

import dataclasses
import os

import pytest

from plasticity_rl import checkpoint
from plasticity_rl import config as config_lib
from plasticity_rl import recorder as recorder_lib
from plasticity_rl import remedies
from plasticity_rl import testing
from plasticity_rl import train
from plasticity_rl import workdir as workdir_lib
from plasticity_rl.interventions import base

QUIET_UNTIL = 2_000  # The probe's replay ratio is 0 before this frame count: no update.


@dataclasses.dataclass(frozen=True)
class _Probe(base.Hooks):
  """Counts metrics rows; resets the head at the first one; no updates before QUIET_UNTIL frames."""

  def init_loop_state(self):
    return {"rows": 0, "surgeries_seen": []}

  def replay_ratio(self, loop_state, frames, replay_ratio):
    return 0.0 if frames < QUIET_UNTIL else replay_ratio

  def on_metrics(self, loop_state, frames, row, agent):
    rows = loop_state["rows"] + 1
    actions = [("probe", None, {"rows": rows, "fau_seen": "fau" in row})]
    if rows == 1:
      head = tuple(n for n in agent.network.layer_names if agent.network.is_output(n))
      actions.append(("probe_reset", lambda state, rng, batch: remedies.reset(
          state, rng, network=agent.network, optimizer=agent.optimizer, obs_shape=agent.obs_shape, layers=head),
                      {"why": "first row"}))
    return {**loop_state, "rows": rows}, actions

  def on_surgery(self, loop_state, name, state, batch, agent):
    del state, agent
    return ({**loop_state, "surgeries_seen": loop_state["surgeries_seen"] + [name]},
            {"probe_saw_batch": batch is not None}, [])


@pytest.fixture
def probe(monkeypatch):
  monkeypatch.setattr(_Probe, "name", "probe")
  monkeypatch.setattr(_Probe, "from_config", classmethod(lambda cls, config: cls()))
  monkeypatch.setitem(base.HOOKS, "probe", _Probe)


@pytest.mark.slow
def test_an_intervention_is_one_class_the_loop_calls(tmp_path, fake_envpool, probe):
  config = testing.configs_module("dqn").get_config("smoke")
  config_lib.validate(config)
  workdir = str(tmp_path / "run")
  workdir_lib.prepare_workdir(workdir, config)
  train.train(config, workdir)
  rows = recorder_lib.read_metrics(workdir)
  measured = [r["frames"] for r in rows if r["kind"] == "plasticity"]
  probes = [r for r in rows if r["kind"] == "event" and r["name"] == "probe"]
  assert [(r["frames"], r["rows"], r["fau_seen"]) for r in probes] == [(f, i + 1, True) for i, f in enumerate(measured)]
  resets = [r for r in rows if r["kind"] == "event" and r["name"] == "probe_reset"]
  assert [r["frames"] for r in resets] == measured[:1] and resets[0]["why"] == "first row"
  assert resets[0]["probe_saw_batch"] and resets[0]["max_abs_dq"] > 0  # A real surgery, seen by on_surgery first.
  updates = {r["frames"]: r["updates"] for r in rows if r["kind"] == "train"}
  assert {u for f, u in updates.items() if f < QUIET_UNTIL} == {0} and updates[config.total_frames] > 0
  saved = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True).restore()
  assert saved.loop["interventions"]["probe"] == {"rows": len(measured), "surgeries_seen": ["probe_reset"]}
