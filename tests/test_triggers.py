"""Metric-triggered injection: the trigger state machine on scripted metric series."""

import json
import math

import ml_collections
import pytest

from plasticity_rl import triggers

PERIOD = 100_000


def run(spec: triggers.TriggerSpec, values) -> list[int]:
  """Feeds values[i] at frames i·PERIOD; returns the frames at which it fired."""
  state, fired = triggers.init_trigger(spec), []
  for i, value in enumerate(values):
    state, fire = triggers.update_trigger(state, i * PERIOD, value)
    if fire:
      fired.append(i * PERIOD)
  assert state.count == len(fired) <= spec.max_count
  return fired


def test_fires_when_the_moving_average_crosses():
  spec = triggers.TriggerSpec("dormant_0.1/head/dense_0", threshold=0.3, window=3, max_count=1)
  # Moving averages from the 3rd value: 0.233, 0.333 -> fires at the 4th call.
  assert run(spec, [0.1, 0.2, 0.4, 0.4, 0.4, 0.9]) == [3 * PERIOD]


def test_needs_a_full_window():
  spec = triggers.TriggerSpec("m", threshold=0.3, window=4)
  assert run(spec, [0.9, 0.9, 0.9]) == []
  assert run(spec, [0.9, 0.9, 0.9, 0.9]) == [3 * PERIOD]


def test_a_spike_is_smoothed_away():
  values = [0.1, 0.1, 0.8, 0.1, 0.1, 0.1]
  assert run(triggers.TriggerSpec("m", threshold=0.35, window=1), values) == [2 * PERIOD]
  assert run(triggers.TriggerSpec("m", threshold=0.35, window=3), values) == []  # Means ≤ 0.333.


def test_threshold_is_strict():
  assert run(triggers.TriggerSpec("m", threshold=0.5, window=1), [0.5, 0.5]) == []
  assert run(triggers.TriggerSpec("m", threshold=0.5, window=1, direction="below"), [0.5, 0.5]) == []


def test_never_more_than_max_count():
  spec = triggers.TriggerSpec("m", threshold=0.3, window=1, max_count=2)
  assert run(spec, [0.9] * 50) == [0, PERIOD]


def test_respects_min_gap():
  spec = triggers.TriggerSpec("m", threshold=0.3, window=1, min_gap_frames=250_000, max_count=3)
  assert run(spec, [0.9] * 20) == [0, 3 * PERIOD, 6 * PERIOD]


def test_window_restarts_after_firing():
  spec = triggers.TriggerSpec("m", threshold=0.3, window=2, max_count=3)
  assert run(spec, [0.9] * 10) == [PERIOD, 3 * PERIOD, 5 * PERIOD]


def test_gap_and_window_together():
  spec = triggers.TriggerSpec("m", threshold=0.3, window=3, min_gap_frames=500_000, max_count=5)
  values = [0.5] * 4 + [0.1] * 3 + [0.5] * 10
  # Call 2: first full window, mean 0.5 -> fires; the window restarts. Calls 3–7 hold means ≤ 0.3; call 8
  # (0.1, 0.5, 0.5: 0.367) fires, 600k frames after the first. The window refills by call 11, but the gap
  # reaches 500k only at call 13.
  assert run(spec, values) == [2 * PERIOD, 8 * PERIOD, 13 * PERIOD]


def test_direction_below():
  spec = triggers.TriggerSpec("srank", threshold=100, window=2, direction="below")
  assert run(spec, [300, 250, 120, 90, 80, 70]) == [4 * PERIOD]  # Means 275, 185, 105, 85.


def test_non_finite_values_are_skipped():
  spec = triggers.TriggerSpec("m", threshold=0.3, window=2)
  assert run(spec, [0.9, math.nan, math.inf, None, 0.9]) == [4 * PERIOD]


def test_off_never_fires():
  assert run(triggers.TriggerSpec("", threshold=0.0, window=1, max_count=10), [1.0] * 10) == []


def test_state_is_pure():
  state = triggers.init_trigger(triggers.TriggerSpec("m", threshold=0.3, window=1))
  new, fire = triggers.update_trigger(state, 0, 0.9)
  assert fire and state.count == 0 and state.window_values == () and new.count == 1
  assert new.last_fire_frames == 0 and new.last_mean == 0.9  # The mean that fired, kept for the event row.
  assert triggers.from_dict(json.loads(json.dumps(triggers.to_dict(new)))) == new


def config(**trigger) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.injection = ml_collections.ConfigDict({"trigger": triggers.trigger_config()})
  c.metrics = ml_collections.ConfigDict({"period_frames": 100_000, "probe_size": 256})
  c.injection.trigger.update(trigger)
  return c


def test_trigger_config_defaults_are_off_and_valid():
  c = config()
  assert c.injection.trigger.metric == ""
  assert set(c.injection.trigger) == {"metric", "threshold", "window", "min_gap_frames", "max_count", "direction"}
  triggers.validate_trigger(c)
  state = triggers.init_trigger(c.injection.trigger)
  assert not state.spec.enabled


def test_init_from_config():
  c = config(metric="srank", threshold=50.0, window=2, min_gap_frames=0, max_count=2, direction="below")
  state = triggers.init_trigger(c.injection.trigger)
  assert state.spec == triggers.TriggerSpec("srank", 50.0, 2, 0, 2, "below")


@pytest.mark.parametrize("field, value", [("window", 0), ("max_count", 0), ("min_gap_frames", -1),
                                          ("direction", "sideways"), ("threshold", math.nan)])
def test_validate_names_the_field(field, value):
  c = config(metric="srank")
  c.injection.trigger[field] = value
  with pytest.raises(ValueError, match=f"injection.trigger.{field}"):
    triggers.validate_trigger(c)


def test_validate_checks_the_metric_name_and_that_metrics_run():
  c = config(metric="dormant_0.1/head/dense_9")
  with pytest.raises(ValueError, match="injection.trigger.metric.*unknown metric"):
    triggers.validate_trigger(c, known_metrics=["dormant_0.1/head/dense_0", "srank"])
  triggers.validate_trigger(config(metric="srank"), known_metrics=["srank"])
  c = config(metric="srank")
  c.metrics.period_frames = 0
  with pytest.raises(ValueError, match="metrics.period_frames"):
    triggers.validate_trigger(c)


# -- adaptive replay ratio ---------------------------------------------------------------------------------------


def replay_ratios(values, window=3, tolerance=0.01):
  state = triggers.ReplayRatioState(low=0.0625, high=0.25, window=window, tolerance=tolerance)
  out = []
  for i, value in enumerate(values):
    state, _ = triggers.update_replay_ratio(state, i * PERIOD, value)
    out.append(state.replay_ratio)
  return out, state


def test_replay_ratio_rises_once_the_metric_settles():
  ratios, state = replay_ratios([0.9, 0.7, 0.5, 0.45, 0.445, 0.442, 0.9, 0.1])
  assert ratios == [0.0625] * 5 + [0.25] * 3  # The window (0.45, 0.445, 0.442) spans ≤ 0.01 at call 5.
  assert state.switched_frames == 5 * PERIOD


def test_replay_ratio_stays_low_while_the_metric_moves_and_skips_nan():
  ratios, state = replay_ratios([0.5, 0.5, math.nan, 0.6, 0.5, 0.6, 0.5])
  assert set(ratios) == {0.0625} and state.switched_frames is None


def test_replay_ratio_state_round_trips_through_json():
  _, state = replay_ratios([0.5, 0.5])
  assert triggers.replay_ratio_from_dict(json.loads(json.dumps(triggers.replay_ratio_to_dict(state)))) == state


@pytest.mark.parametrize("field, value", [("low", 0.0), ("high", 0.01), ("window", 1), ("tolerance", -1.0)])
def test_adaptive_replay_ratio_validation_names_the_field(field, value):
  config = ml_collections.ConfigDict({"metrics": {"period_frames": 1000},
                                      "learner": {"adaptive_replay_ratio": triggers.adaptive_replay_ratio_config()}})
  config.learner.adaptive_replay_ratio.enabled = True
  config.learner.adaptive_replay_ratio[field] = value
  with pytest.raises(ValueError, match=f"adaptive_replay_ratio.{field}"):
    triggers.validate_adaptive_replay_ratio(config)


def test_adaptive_replay_ratio_watches_the_critics_fau_by_default():
  """Issue 12: Ma et al. watch the critic's FAU (Adaptive-Replay-Ratio, drqv2_adapt_rr.py Critic.forward_with_FAU:
  active elements / elements of the Q-heads' hidden layers, the encoder apart): here the head after the encoder."""
  from plasticity_rl import config as config_lib
  from plasticity_rl import metrics
  from plasticity_rl.agents import dqn
  assert triggers.adaptive_replay_ratio_config().metric == "fau/head"
  config = config_lib.apply_scale(config_lib.base_config(), "smoke")
  assert config.learner.adaptive_replay_ratio.metric == "fau/head"
  assert "fau/head" in metrics.metric_names(dqn.make_agent(config, num_actions=2))
  config.learner.adaptive_replay_ratio.enabled = True
  config_lib.validate(config)
