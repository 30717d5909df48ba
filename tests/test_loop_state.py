"""loop_state: the cadence of the loop's periodic work and one seed's loop state, saved and restored as a unit."""

import json

import jax
import numpy as np

from plasticity_rl import loop_state
from plasticity_rl import testing


def _config(**periods):
  config = testing.configs_module("dqn").get_config("smoke")
  config.log.period_frames = periods.get("log", 400)
  config.eval.period_frames = periods.get("eval", 1000)
  config.metrics.period_frames = periods.get("metrics", 0)
  config.checkpoint.period_frames = periods.get("save", 0)
  return config


def test_cadence_catches_up_logs_and_evaluations_one_period_at_a_time():
  cadence = loop_state.Cadence.from_config(_config(log=400, eval=1000), frames=0)
  assert (cadence.next_log, cadence.next_eval, cadence.next_metrics, cadence.next_save) == (400, 1000, None, None)
  assert not cadence.log_due(399)
  assert [cadence.log_due(1000) for _ in range(3)] == [True, True, False]  # 400, 800; next at 1200.
  assert cadence.eval_due(1000) and cadence.eval_due(1000)  # Due until evaluated (a stopped one stays due).
  cadence.evaluated()
  assert not cadence.eval_due(1999) and cadence.next_eval == 2000
  assert not cadence.metrics_due(10**6) and not cadence.save_due(10**6)  # Periods 0: never.


def test_cadence_metrics_and_checkpoints_go_to_the_next_multiple():
  cadence = loop_state.Cadence.from_config(_config(metrics=500, save=300), frames=0)
  assert cadence.metrics_due(1200) and cadence.next_metrics == 1500
  assert not cadence.metrics_due(1499)
  assert cadence.save_due(1000) and cadence.next_save == 1200


def test_cadence_resumes_from_the_saved_loop_and_a_reincarnated_run_starts_at_its_frames():
  config = _config(log=400, eval=1000, metrics=500, save=300)
  saved = {"next_log": 1600, "next_eval": 2000, "next_metrics": 1500}
  resumed = loop_state.Cadence.from_config(config, frames=1400, saved=saved)
  assert resumed.to_dict() == saved and resumed.next_save == 1500
  reincarnated = loop_state.Cadence.from_config(config, frames=1400)
  assert reincarnated.to_dict() == {"next_log": 1600, "next_eval": 2000, "next_metrics": 1500}
  assert loop_state.Cadence.from_config(config, frames=1600).next_log == 2000  # Past a multiple: the next one.


def _seed_loop(config):
  return loop_state.SeedLoop.start(config, jax.random.key(1), jax.random.key(2))


def _triggered_config():
  config = _config()
  config.injection.trigger.update(metric="fau", threshold=0.5, window=2)
  config.learner.adaptive_replay_ratio.update(enabled=True, metric="fau", low=0.0625, high=0.25, window=2,
                                              tolerance=1.0)
  config.learner.replay_ratio = 0.25
  return config


def test_seed_loop_saves_the_checkpoint_keys_and_restores_as_a_unit():
  config = _triggered_config()
  loop = _seed_loop(config)
  assert [h.name for h in loop.hooks] == ["injection_trigger", "replay_ratio"]
  assert loop.replay_ratio(config, 0) == 0.0625  # The adaptive ratio starts low.
  loop.updates, loop.updates_due, loop.eval_means = 7, 0.5, [(1000, 3.0)]
  for ret in range(25):
    loop.add_episode(float(ret))
  assert loop.episodes == 25 and loop.recent_returns == [float(r) for r in range(5, 25)]
  assert loop.on_metrics(1000, {"fau": 0.1}, agent=None) == []  # One value in a window of 2: no decision yet.
  cadence = loop_state.Cadence.from_config(config, frames=1200)
  saved = loop.to_dict(1200, cadence, {"loss": 1.5}, 3, 12.0)
  assert tuple(saved) == loop_state.LOOP_KEYS
  assert saved["frames"] == 1200 and saved["info_sum"] == {"loss": 1.5} and saved["info_count"] == 3
  assert tuple(saved["trigger"]["window_values"]) == (0.1,) == tuple(saved["replay_ratio_state"]["values"])
  assert saved["expansion_review"] is None and saved["interventions"] == {}
  saved = json.loads(json.dumps(saved))  # As the checkpoint stores it.

  restored = _seed_loop(config)
  restored.restore(saved, {"eval": jax.random.key(3), "surgery": jax.random.key(4)}, resumed=True)
  assert json.loads(json.dumps(restored.to_dict(1200, cadence, {"loss": 1.5}, 3, 12.0))) == saved
  np.testing.assert_array_equal(jax.random.key_data(restored.eval_rng), jax.random.key_data(jax.random.key(3)))
  actions = restored.on_metrics(1400, {"fau": 0.1}, agent=None)  # The restored windows fill: the ratio switches.
  assert [(name, fn, fields["replay_ratio"]) for name, fn, fields in actions] == [("replay_ratio", None, 0.25)]
  assert restored.replay_ratio(config, 1400) == 0.25

  reincarnated = _seed_loop(config)  # A saved agent's counters, but this run's own trigger and replay ratio.
  reincarnated.restore(saved, {"eval": jax.random.key(3), "surgery": jax.random.key(4)}, resumed=False)
  assert reincarnated.updates == 7 and reincarnated.hook_states == _seed_loop(config).hook_states


def test_an_old_checkpoint_without_the_later_keys_resumes_with_initial_states():
  config = _triggered_config()
  loop = _seed_loop(config)
  old = {k: v for k, v in loop.to_dict(400, loop_state.Cadence.from_config(config, 400), None, 0, 1.0).items()
         if k not in ("next_metrics", "trigger", "expansion_review", "replay_ratio_state", "interventions")}
  restored = _seed_loop(config)
  restored.restore(old, {"eval": jax.random.key(3), "surgery": jax.random.key(4)}, resumed=True)
  assert restored.hook_states == loop.hook_states
  assert loop_state.Cadence.from_config(config, 400, saved=old).next_metrics is None


def test_the_sampler_hook_draws_the_iterations_batches():
  """Without a sampler hook: the replay's uniform [K, B] draw; with expansion's review: its draws."""
  from plasticity_rl import replay as replay_lib  # pylint: disable=g-import-not-at-top
  plain, expanded = _config(), testing.configs_module("expansion").get_config("smoke")
  def filled():
    replay = replay_lib.ReplayBuffer(120, 3, frame_shape=(6, 6), n_step=3, seed=7)
    rng = np.random.default_rng(7)
    for t in range(60):
      replay.add(rng.integers(0, 256, (3, 6, 6), dtype=np.uint8), rng.integers(0, 4, 3), rng.normal(size=3),
                 rng.random(3) < 0.2, np.full(3, t % 4 == 3), np.full(3, t % 4 == 0))
    return replay
  np.testing.assert_array_equal(_seed_loop(plain).sample(filled(), 3, 4)["obs"], filled().sample_many(3, 4)["obs"])
  reviewing = _seed_loop(expanded)
  review = reviewing.hook_states["expansion_review"]
  review.remaining = 3  # A review running: every batch from the oldest part.
  got = reviewing.sample(filled(), 3, 4)["obs"]
  assert got.shape[:2] == (3, 4) and review.remaining == 0
