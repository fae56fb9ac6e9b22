"""Selection: pick one model among a decision's candidates.

Each algorithm is a class registered by name in SELECTION_ALGORITHMS; a decision names one in
config. Learned and online algorithms (later issues) join the same registry.
"""

from routeyard.selection import static as _static  # noqa: F401 - registers static algorithms
from routeyard.selection.base import (
    SELECTION_ALGORITHMS,
    CandidateView,
    Selection,
    SelectionAlgorithm,
    make_algorithm,
)

__all__ = [
    "SELECTION_ALGORITHMS",
    "CandidateView",
    "Selection",
    "SelectionAlgorithm",
    "make_algorithm",
]
