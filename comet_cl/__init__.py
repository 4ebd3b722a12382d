"""comet-cl: a continual-learning benchmark suite built around COMET."""

import warnings

__version__ = "0.1.0"

# avalanche-lib imports qpsolvers (for GEM) and warns on every start that no QP solver is
# installed; no strategy here uses one.
warnings.filterwarnings("ignore", "no QP solver found", UserWarning)
