"""The adaptive replay ratio: start low, switch to the high ratio once a plasticity metric settles.

config.learner.adaptive_replay_ratio (triggers.py: the rule, its fields and their validation; the idea of
Ma et al. 2024, "Revisiting plasticity in visual RL", which raise the ratio once the critic's FAU stops
changing): the ratio in force is `low` until the metric has stayed within `tolerance` over `window` metrics
calls, then `high` for the rest of the run; the switch is logged as a "replay_ratio" event. Per seed.
"""

import dataclasses
from typing import ClassVar

from plasticity_rl import triggers
from plasticity_rl.interventions import base


@base.register("replay_ratio")
@dataclasses.dataclass(frozen=True)
class AdaptiveReplayRatio(base.Hooks):
  """The switch's rule (low, high, window, tolerance) on one metric."""

  checkpoint_key: ClassVar[str] = "replay_ratio_state"  # The loop dict's key since the adaptive ratio exists.
  metric: str
  low: float
  high: float
  window: int
  tolerance: float

  @classmethod
  def from_config(cls, config) -> "AdaptiveReplayRatio | None":
    c = config.learner.adaptive_replay_ratio
    if not c.enabled:
      return None
    return cls(str(c.metric), float(c.low), float(c.high), int(c.window), float(c.tolerance))

  def init_loop_state(self) -> triggers.ReplayRatioState:
    return triggers.ReplayRatioState(low=self.low, high=self.high, window=self.window, tolerance=self.tolerance)

  def loop_state_to_dict(self, loop_state: triggers.ReplayRatioState) -> dict:
    return triggers.replay_ratio_to_dict(loop_state)

  def loop_state_from_dict(self, saved: dict) -> triggers.ReplayRatioState:
    return triggers.replay_ratio_from_dict(saved)

  def replay_ratio(self, loop_state, frames: int, replay_ratio: float) -> float:
    del frames, replay_ratio  # The config's ratio is the high one (config.validate).
    return loop_state.replay_ratio

  def on_metrics(self, loop_state, frames: int, row: dict[str, float], agent):
    del agent
    loop_state, switched = triggers.update_replay_ratio(loop_state, frames, row.get(self.metric))
    if not switched:
      return loop_state, []
    return loop_state, [("replay_ratio", None, {"replay_ratio": loop_state.high, "metric": self.metric,
                                                "window": list(loop_state.values)})]
