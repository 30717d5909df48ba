"""Expansion's dormant-unit count and experience review (expansion.py: the growth and pruning, `Review`).

With config.expansion.enabled: before each "expansion" surgery (after learning starts) the dormant units among
the active ones are counted on its replay batch (the event's `dormant_active`), and the dormant fraction goes
to the review; when it has flattened, the next `review_batches` learner batches are drawn from the oldest
`review_fraction` of the replay with probability `review_probability` (an "expansion_review" event).
Per seed: each seed's review has its own history and generator (seeded with the seed).
"""

import dataclasses
from typing import Any, ClassVar

import numpy as np

from plasticity_rl.interventions import base


def _expansion():
  from plasticity_rl import expansion  # pylint: disable=g-import-not-at-top  (expansion imports the agent)
  return expansion


@base.register("expansion_review")
@dataclasses.dataclass(frozen=True)
class ExpansionReview(base.Hooks):
  """The dormant threshold and the review's settings (None: no review, review_batches 0)."""

  checkpoint_key: ClassVar[str] = "expansion_review"  # The loop dict's key since the review exists.
  prune_tau: float
  review: tuple | None = None  # (fraction, window, tolerance, batches, probability, seed) of expansion.Review.

  @classmethod
  def from_config(cls, config) -> "ExpansionReview | None":
    c = config.get("expansion")
    if c is None or not c.enabled:
      return None
    review = _expansion().Review.from_config(config)
    return cls(float(c.prune_tau), None if review is None else (
        review.fraction, review.window, review.tolerance, review.batches, review.probability, review.seed))

  def init_loop_state(self) -> Any:
    """An expansion.Review, or None."""
    if self.review is None:
      return None
    fraction, window, tolerance, batches, probability, seed = self.review
    return _expansion().Review(fraction, window, tolerance, batches, probability=probability, seed=seed)

  def loop_state_to_dict(self, loop_state):
    return None if loop_state is None else loop_state.state_dict()

  def loop_state_from_dict(self, saved):
    review = self.init_loop_state()
    if review is not None:
      review.load_state_dict(saved)
    return review

  def on_surgery(self, loop_state, name: str, state, batch, agent):
    if name != "expansion" or batch is None:
      return loop_state, {}, []
    count, fraction = _expansion().dormant_count_jit(agent.network, state, batch["obs"], tau=self.prune_tau)
    rows = []
    if loop_state is not None and loop_state.observe(float(fraction)):
      rows.append({"name": "expansion_review", "batches": loop_state.batches, "oldest_fraction": loop_state.fraction})
    return loop_state, {"dormant_active": int(count)}, rows

  def sample(self, loop_state, replay, count: int, batch_size: int):
    if loop_state is None:
      return None
    batches = [loop_state.sample(replay, batch_size) for _ in range(count)]
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}
