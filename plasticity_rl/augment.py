"""Learner-batch augmentation (DrQ): moved to plasticity_rl/interventions/augment.py; this name stays."""

from plasticity_rl.interventions.augment import AUGMENTATIONS  # noqa: F401
from plasticity_rl.interventions.augment import DRQ_PAD  # noqa: F401
from plasticity_rl.interventions.augment import INTENSITY_SCALE  # noqa: F401
from plasticity_rl.interventions.augment import Augment  # noqa: F401
from plasticity_rl.interventions.augment import augment_batch  # noqa: F401
from plasticity_rl.interventions.augment import drq_dopamine  # noqa: F401
from plasticity_rl.interventions.augment import random_shift  # noqa: F401
