"""The weight regularizers (L2, L2-init): moved to plasticity_rl/interventions/regularizer.py; this name stays."""

from plasticity_rl.interventions.regularizer import KINDS  # noqa: F401
from plasticity_rl.interventions.regularizer import Params  # noqa: F401
from plasticity_rl.interventions.regularizer import Regularizer  # noqa: F401
from plasticity_rl.interventions.regularizer import SCHEDULES  # noqa: F401
from plasticity_rl.interventions.regularizer import coefficient  # noqa: F401
from plasticity_rl.interventions.regularizer import from_config  # noqa: F401
from plasticity_rl.interventions.regularizer import penalty  # noqa: F401
from plasticity_rl.interventions.regularizer import reference  # noqa: F401
from plasticity_rl.interventions.regularizer import regularizer_config  # noqa: F401
from plasticity_rl.interventions.regularizer import validate  # noqa: F401
