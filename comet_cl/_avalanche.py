"""Import Avalanche once, without its start-up warning, and without touching anyone's filters.

avalanche-lib imports qpsolvers (for GEM) and warns on every start that no QP solver is
installed; no strategy here uses one. The warning is silenced only while Avalanche is first
imported (``catch_warnings`` restores the process's filters after), instead of by a filter
set for the whole process when ``comet_cl`` is imported. Every comet_cl module that imports
Avalanche imports this module first.
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "no QP solver found", UserWarning)
    import avalanche  # noqa: F401
