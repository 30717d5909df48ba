"""The schedule of interventions: pure state surgeries applied at frame counts.

An intervention is a function `(state, rng, batch) -> state` on the learner's
TrainState (`batch` is a replay batch, for those that need data). The loop does
not know them by name: it asks the `Schedule` which are due between two frame
counts, applies them, and logs each as an event. Builders register themselves
in INTERVENTIONS by name; `make_schedule` reads the config sections that name
them (e.g. `config.injection.frames`).
"""

import dataclasses
from typing import Any, Callable

Intervention = Callable[[Any, Any, dict], Any]  # (state, rng, batch) -> state
# name -> builder(config, agent) -> [(frames, intervention), …] (empty when off).
INTERVENTIONS: dict[str, Callable[[Any, Any], list[tuple[int, Intervention]]]] = {}


def register(name: str):
  def decorator(builder):
    INTERVENTIONS[name] = builder
    return builder
  return decorator


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


def make_schedule(config, agent) -> Schedule:
  pending = []
  for name, builder in INTERVENTIONS.items():
    pending.extend(Scheduled(name, int(frames), fn) for frames, fn in builder(config, agent))
  return Schedule(sorted(pending, key=lambda s: s.frames))
