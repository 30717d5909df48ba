"""Metric-triggered interventions: fire when a smoothed plasticity metric crosses a threshold.

A host-side state machine, fed once per metrics call (no per-step host sync):

    state = init_trigger(config.injection.trigger)
    …
    state, fire = update_trigger(state, frames, metrics["dormant_0.1/head/dense_0"])
    if fire: inject

It fires at a metrics call when all of these hold:
  - the moving average of the last `window` finite values (at least `window`
    of them since the start or the last firing) is above the threshold
    (direction "above": mean > threshold) or below it ("below": mean < threshold);
  - fewer than `max_count` firings so far;
  - at least `min_gap_frames` frames since the last firing (none yet: no gap).
After a firing the window restarts empty, so the metric of the changed network
must stay past the threshold for `window` fresh calls before the next one.
Non-finite values (NaN, inf) are skipped: they neither enter the window nor fire.
Everything here is pure: states are frozen dataclasses of Python numbers.
"""

import dataclasses
import math
from typing import Iterable

import ml_collections

DIRECTIONS = ("above", "below")


@dataclasses.dataclass(frozen=True)
class TriggerSpec:
  metric: str  # A name that plasticity_metrics returns; "" = off.
  threshold: float
  window: int = 1
  min_gap_frames: int = 0
  max_count: int = 1
  direction: str = "above"

  @property
  def enabled(self) -> bool:
    return bool(self.metric)


@dataclasses.dataclass(frozen=True)
class TriggerState:
  spec: TriggerSpec
  window_values: tuple[float, ...] = ()  # The last ≤ spec.window finite values since the last firing.
  count: int = 0  # Firings so far.
  last_fire_frames: int | None = None
  last_mean: float | None = None  # The moving average at the last update (None until the window is full).

  @property
  def moving_average(self) -> float | None:
    if len(self.window_values) < self.spec.window:
      return None
    return sum(self.window_values) / len(self.window_values)

  @property
  def exhausted(self) -> bool:
    return self.count >= self.spec.max_count


def trigger_config() -> ml_collections.ConfigDict:
  """The fields of config.injection.trigger, with their defaults (off)."""
  c = ml_collections.ConfigDict()
  c.metric = ""  # e.g. "dormant_0.1/head/dense_0" (a plasticity_metrics name); "" = off.
  c.threshold = 0.3  # Compared with the moving average of the metric.
  c.window = 3  # Metric calls in the moving average (calls come every config.metrics.period_frames).
  c.min_gap_frames = 10_000_000  # Frames between two triggered injections.
  c.max_count = 1  # Most triggered injections in a run.
  c.direction = "above"  # "above": fire when mean > threshold; "below": mean < threshold.
  return c


def spec_from_config(trigger) -> TriggerSpec:
  """config.injection.trigger -> TriggerSpec."""
  return TriggerSpec(metric=str(trigger.metric), threshold=float(trigger.threshold), window=int(trigger.window),
                     min_gap_frames=int(trigger.min_gap_frames), max_count=int(trigger.max_count),
                     direction=str(trigger.direction))


def init_trigger(trigger) -> TriggerState:
  """A fresh state from config.injection.trigger (a ConfigDict) or a TriggerSpec."""
  spec = trigger if isinstance(trigger, TriggerSpec) else spec_from_config(trigger)
  return TriggerState(spec)


def update_trigger(state: TriggerState, frames: int, metric_value: float | None) -> tuple[TriggerState, bool]:
  """Adds one metric value observed at `frames`; returns (new state, fire)."""
  spec = state.spec
  if not spec.enabled or metric_value is None or not math.isfinite(float(metric_value)):
    return state, False
  values = (state.window_values + (float(metric_value),))[-spec.window:]
  state = dataclasses.replace(state, window_values=values)
  mean = state.moving_average
  state = dataclasses.replace(state, last_mean=mean)
  crossed = mean is not None and (mean > spec.threshold if spec.direction == "above" else mean < spec.threshold)
  gap_ok = state.last_fire_frames is None or frames - state.last_fire_frames >= spec.min_gap_frames
  if not (crossed and gap_ok and not state.exhausted):
    return state, False
  return dataclasses.replace(state, window_values=(), count=state.count + 1, last_fire_frames=int(frames)), True


def to_dict(state: TriggerState) -> dict:
  """JSON-friendly, for checkpoints."""
  return dataclasses.asdict(state)


def from_dict(d: dict) -> TriggerState:
  return TriggerState(spec=TriggerSpec(**d["spec"]), window_values=tuple(d["window_values"]), count=d["count"],
                      last_fire_frames=d["last_fire_frames"], last_mean=d.get("last_mean"))


def validate_trigger(config, known_metrics: Iterable[str] | None = None) -> None:
  """ValueError naming the field when config.injection.trigger cannot work.

  Args:
    config: the run config (with injection.trigger and, if present, metrics).
    known_metrics: the names plasticity_metrics returns for the fresh network
      (metrics.metric_names(agent)); None skips the name check.
  """
  t = config.injection.trigger
  field = lambda name: f"config.injection.trigger.{name}"
  if not isinstance(t.metric, str):
    raise ValueError(f"{field('metric')}: must be a metric name or \"\" (off), got {t.metric!r}")
  if not t.metric:
    return
  if known_metrics is not None:
    known = sorted(known_metrics)
    if t.metric not in known:
      raise ValueError(f"{field('metric')}: unknown metric {t.metric!r} (it must exist before the first "
                       f"injection); known: {known}")
  if not math.isfinite(float(t.threshold)):
    raise ValueError(f"{field('threshold')}: must be finite, got {t.threshold!r}")
  for name, low in (("window", 1), ("max_count", 1), ("min_gap_frames", 0)):
    value = t[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      raise ValueError(f"{field(name)}: must be an integer ≥ {low}, got {value!r}")
  if t.direction not in DIRECTIONS:
    raise ValueError(f"{field('direction')}: must be one of {list(DIRECTIONS)}, got {t.direction!r}")
  if "metrics" in config and not config.metrics.period_frames > 0:
    raise ValueError(f"{field('metric')}: a trigger needs metrics: config.metrics.period_frames must be > 0, "
                     f"got {config.metrics.period_frames!r}")


# -- adaptive replay ratio (Ma et al. 2024) -----------------------------------------------------------------------


def adaptive_replay_ratio_config() -> ml_collections.ConfigDict:
  """config.learner.adaptive_replay_ratio: learn at a low replay ratio until the critic's FAU settles.

  Ma et al. 2024 ("Revisiting Plasticity in Visual RL", ICLR; code Guozheng-Ma/Adaptive-Replay-Ratio) start at
  a low replay ratio, where plasticity is preserved early on, and raise it once the critic's fraction of active
  units stops changing. What they watch: `FAU_critic` of drqv2_adapt_rr.py `Critic.forward_with_FAU`, the
  active activation elements over all elements of the critic's hidden ReLU layers (the Q-heads after the
  encoder; the encoder's FAU is logged apart and not watched). In the Q-network here the critic is the head
  after the conv encoder, so the default metric is `fau/head` (metrics.active_elements over the head's hidden
  layers; `fau` would add the encoder's conv maps, which outnumber the head's elements ~40×).

  The rule here: once the last `window` values of `metric` (one per metrics call) span at most `tolerance`
  (max − min), learner.replay_ratio becomes `high` for the rest of the run; before that it is `low`.
  train_adapt_rr.py instead compares, every check_freq = 50 episodes, the mean FAU over one episode's updates
  with the previous such mean and switches when they differ by ≤ Phi_gap = 0.001 (cfgs/drqv2_adapt_rr_config.yaml),
  from update_every_steps 2 to 1 with 2 updates per step: 0.5 → 2 updates per agent step, 4×. Kept as it is
  here: our values come from one probe batch per metrics call (config.metrics.period_frames), far noisier than
  a mean over an episode of training batches, so a two-value gap of 0.001 would rarely be met; `low`/`high`
  keep the paper's 4× step at the DQN's own scale (0.25 is DQN Zoo's replay ratio).
  """
  c = ml_collections.ConfigDict()
  c.enabled = False  # Start at replay ratio `low` and switch to `high` once `metric` settles.
  c.metric = "fau/head"  # The critic's FAU, counted in activation elements (Ma et al.); any plasticity_metrics name.
  c.low = 0.0625  # Replay ratio until the switch (updates per agent step).
  c.high = 0.25  # Replay ratio after it.
  c.window = 5  # Metric calls the FAU must stay within `tolerance` over.
  c.tolerance = 0.01  # max − min of the window, in FAU units.
  return c


@dataclasses.dataclass(frozen=True)
class ReplayRatioState:
  low: float
  high: float
  window: int
  tolerance: float
  values: tuple[float, ...] = ()
  switched_frames: int | None = None  # When the ratio went up; None: still low.

  @property
  def replay_ratio(self) -> float:
    return self.low if self.switched_frames is None else self.high


def init_replay_ratio(c) -> ReplayRatioState:
  return ReplayRatioState(low=float(c.low), high=float(c.high), window=int(c.window), tolerance=float(c.tolerance))


def update_replay_ratio(state: ReplayRatioState, frames: int, value: float | None
                        ) -> tuple[ReplayRatioState, bool]:
  """Adds one metric value; returns (new state, switched now). Non-finite values are skipped."""
  if state.switched_frames is not None or value is None or not math.isfinite(float(value)):
    return state, False
  values = (state.values + (float(value),))[-state.window:]
  settled = len(values) == state.window and max(values) - min(values) <= state.tolerance
  return dataclasses.replace(state, values=values, switched_frames=int(frames) if settled else None), settled


def replay_ratio_to_dict(state: ReplayRatioState) -> dict:
  return dataclasses.asdict(state)


def replay_ratio_from_dict(d: dict) -> ReplayRatioState:
  return ReplayRatioState(**{**d, "values": tuple(d["values"])})


def validate_adaptive_replay_ratio(config) -> None:
  """ValueError naming the field when config.learner.adaptive_replay_ratio cannot work."""
  c = config.learner.adaptive_replay_ratio
  field = lambda name: f"config.learner.adaptive_replay_ratio.{name}"
  if not c.enabled:
    return
  if not c.low > 0:
    raise ValueError(f"{field('low')}: must be > 0, got {c.low!r}")
  if not c.high >= c.low:
    raise ValueError(f"{field('high')}: must be ≥ low ({c.low!r}), got {c.high!r}")
  if isinstance(c.window, bool) or not isinstance(c.window, int) or c.window < 2:
    raise ValueError(f"{field('window')}: must be an integer ≥ 2, got {c.window!r}")
  if not c.tolerance >= 0:
    raise ValueError(f"{field('tolerance')}: must be ≥ 0, got {c.tolerance!r}")
  if not config.metrics.period_frames > 0:
    raise ValueError(f"{field('enabled')}: needs metrics: config.metrics.period_frames must be > 0, "
                     f"got {config.metrics.period_frames!r}")
