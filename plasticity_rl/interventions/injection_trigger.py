"""Metric-triggered plasticity injection: inject when a plasticity metric's moving average crosses a threshold.

config.injection.trigger (triggers.py: the rule, its fields and their validation): after every plasticity
metrics row, the metric's value enters a window of `window` calls; when its mean is above (or below)
`threshold`, at least `min_gap_frames` after the last firing and with fewer than `max_count` firings so far,
the seed's learner gets an injection of config.injection's target (`target`, `reset_optimizer`,
`freeze_encoder`, `all_trainable`, `stop_frozen_grad`, as the scheduled ones), logged as an "injection"
event with the metric and its mean.
Per seed: each seed's window and count are its own (the loop keeps one state per seed).
"""

import dataclasses
from typing import ClassVar

from plasticity_rl import triggers
from plasticity_rl.interventions import base


@base.register("injection_trigger")
@dataclasses.dataclass(frozen=True)
class InjectionTrigger(base.Hooks):
  """The trigger's rule and the injection it applies."""

  checkpoint_key: ClassVar[str] = "trigger"  # The loop dict's key since triggers exist.
  spec: triggers.TriggerSpec
  target: str = "head"
  reset_optimizer: bool = False
  freeze_encoder: bool = False
  all_trainable: bool = False
  stop_frozen_grad: bool = False

  @classmethod
  def from_config(cls, config) -> "InjectionTrigger | None":
    c = config.injection
    if not c.trigger.metric:
      return None
    return cls(triggers.spec_from_config(c.trigger), str(c.target), bool(c.reset_optimizer), bool(c.freeze_encoder),
               bool(c.all_trainable), bool(c.stop_frozen_grad))

  def init_loop_state(self) -> triggers.TriggerState:
    return triggers.init_trigger(self.spec)

  def loop_state_to_dict(self, loop_state: triggers.TriggerState) -> dict:
    return triggers.to_dict(loop_state)

  def loop_state_from_dict(self, saved: dict) -> triggers.TriggerState:
    return triggers.from_dict(saved)

  def on_metrics(self, loop_state, frames: int, row: dict[str, float], agent):
    loop_state, fire = triggers.update_trigger(loop_state, frames, row.get(self.spec.metric))
    if not fire:
      return loop_state, []
    from plasticity_rl import surgery  # pylint: disable=g-import-not-at-top  (surgery imports the agent)
    plan = surgery.InjectionPlan(frames=(), layers=surgery.resolve_target(agent.network, self.target),
                                 hidden=(None,), reset_optimizer=self.reset_optimizer,
                                 freeze_encoder=self.freeze_encoder, all_trainable=self.all_trainable,
                                 stop_frozen_grad=self.stop_frozen_grad)
    return loop_state, [("injection", surgery.injection(agent, plan),
                         {"trigger": self.spec.metric, "trigger_mean": loop_state.last_mean})]
