"""Plasticity interventions: one module per intervention, one interface (base.Hooks), found by name.

    base.py           the hooks (no-ops) every intervention may override, the registry (HOOKS), `register`
    scheduling.py     scheduled surgeries: Schedule, make_schedule, the INTERVENTIONS builders' registry
    regularizer.py    L2 / L2-init loss terms (config.regularizer)
    augment.py        DrQ's learner-batch augmentation (config.learner.augment)
    hare_tortoise.py  Hare & Tortoise (Lee et al. 2024): an EMA tortoise, the hare reset to it (config.hare_tortoise)
    injection_trigger.py  metric-triggered injection (config.injection.trigger; the rule in triggers.py)
    replay_ratio.py   the adaptive replay ratio (config.learner.adaptive_replay_ratio)
    expansion_review.py   expansion's dormant count at each growth step and its experience review (sampler)

Surgeries registered as builders (`register(name)` on a function) live beside the code they call:
surgery.py (injection), remedies.py (reset, redo, shrink_perturb), expansion.py; `make_schedule` loads them.
Adding an intervention: one module here (a Hooks subclass with `@register`; every module of this package is
imported below, in name order, which is the order of `learner_hooks`) and its test (docs/interventions.md).
"""

import importlib
import pkgutil

from plasticity_rl.interventions.base import HOOKS
from plasticity_rl.interventions.base import Hooks
from plasticity_rl.interventions.base import config_sections
from plasticity_rl.interventions.base import get
from plasticity_rl.interventions.base import inactive
from plasticity_rl.interventions.base import learner_hooks
from plasticity_rl.interventions.base import register
from plasticity_rl.interventions.base import validate
from plasticity_rl.interventions.scheduling import INTERVENTIONS
from plasticity_rl.interventions.scheduling import Intervention
from plasticity_rl.interventions.scheduling import Schedule
from plasticity_rl.interventions.scheduling import Scheduled
from plasticity_rl.interventions.scheduling import checked_frames
from plasticity_rl.interventions.scheduling import make_schedule
from plasticity_rl.interventions.scheduling import schedule_frames

MODULES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in ("base", "scheduling")))
for _module in MODULES:  # Importing an intervention module registers it.
  importlib.import_module(f"{__name__}.{_module}")
