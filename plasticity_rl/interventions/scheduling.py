"""The schedule of interventions: pure state surgeries applied at frame counts.

A surgery (`Intervention`) is a function `(state, rng, batch) -> state` on the learner's
TrainState (`batch` is a replay batch, for those that need data). The loop does not know
them by name: it asks the `Schedule` which are due between two frame counts, applies them,
and logs each as an event. Two kinds of sources fill it (`make_schedule`):

- builders registered by name in INTERVENTIONS, `builder(config, agent) -> [(frames, surgery)]`
  (surgery.py's injection, remedies.py's reset / redo / shrink_perturb, expansion.py), each
  reading the config section that names it (e.g. `config.injection.frames`);
- the `surgeries` hook of every intervention module on the agent (`agent.hooks`, base.Hooks),
  e.g. Hare & Tortoise's resets of the hare to the tortoise.
"""

import dataclasses
import importlib
from typing import Any, Callable, Sequence

Intervention = Callable[[Any, Any, dict], Any]  # (state, rng, batch) -> state
# name -> builder(config, agent) -> [(frames, intervention), …] (empty when off).
INTERVENTIONS: dict[str, Callable[[Any, Any], list[tuple[int, Intervention]]]] = {}
# The modules whose builders register in INTERVENTIONS; they import agents/dqn, so they are loaded on first use
# (make_schedule), not with this package (which agents/dqn imports).
SURGERY_MODULES = ("plasticity_rl.expansion", "plasticity_rl.remedies", "plasticity_rl.surgery")


@dataclasses.dataclass(frozen=True)
class Scheduled:
  name: str
  frames: int
  apply: Intervention


@dataclasses.dataclass
class Schedule:
  """Interventions sorted by frame; `due(frames)` pops those whose frame has come."""

  pending: list[Scheduled]

  def due(self, frames: int) -> list[Scheduled]:
    ready = [s for s in self.pending if s.frames <= frames]
    self.pending = [s for s in self.pending if s.frames > frames]
    return ready


def checked_frames(config, section: str, what: str = "frame") -> tuple[int, ...]:
  """config.<section>.frames as ints; ValueError naming the field unless every one is within 0..total_frames."""
  frames = tuple(int(f) for f in config[section].frames)
  if any(f < 0 or f > config.total_frames for f in frames):
    raise ValueError(f"{section}.frames {frames}: every {what} must be within 0..total_frames ({config.total_frames})")
  return frames


def schedule_frames(frames: Sequence[int], period_frames: int, total_frames: int,
                    start_frames: int = 0) -> tuple[int, ...]:
  """Sorted, unique: `frames` ∪ {k·period_frames : k ≥ 1, start_frames ≤ k·period_frames ≤ total_frames}."""
  points = {int(f) for f in frames}
  if period_frames > 0:
    first = max(1, -(-start_frames // period_frames))
    points |= set(range(first * period_frames, total_frames + 1, period_frames))
  return tuple(sorted(points))


def load_surgery_modules() -> None:
  """Imports the modules that register surgery builders (idempotent), so that a caller needs none of them."""
  for module in SURGERY_MODULES:
    importlib.import_module(module)


def make_schedule(config, agent) -> Schedule:
  load_surgery_modules()
  pending = []
  for name, builder in INTERVENTIONS.items():
    pending.extend(Scheduled(name, int(frames), fn) for frames, fn in builder(config, agent))
  for hook in getattr(agent, "hooks", ()):
    pending.extend(Scheduled(hook.name, int(frames), fn) for frames, fn in hook.surgeries(config, agent))
  return Schedule(sorted(pending, key=lambda s: s.frames))
