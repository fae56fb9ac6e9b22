"""Selection: pick one model among a decision's candidates.

Each algorithm is a class registered by name in SELECTION_ALGORITHMS (importing its module
registers it); a decision names one in config, with `algorithm_options`.
"""

from routeyard.selection.base import (
    SELECTION_ALGORITHMS,
    AlgorithmBuild,
    CandidateView,
    Selection,
    SelectionAlgorithm,
    make_algorithm,
)
from routeyard.selection.budget import BudgetSelection as BudgetSelection  # registers "budget"
from routeyard.selection.cost_aware import CheapestSelection, QualityCostSelection
from routeyard.selection.latency_aware import LatencyAwareSelection, LoadAwareSelection
from routeyard.selection.learned_selection import LearnedSelection
from routeyard.selection.online import (
    EloSelection,
    EmaSelection,
    LinUCBSelection,
    OnlineAlgorithm,
    ThompsonSelection,
)
from routeyard.selection.static import FirstHealthySelection, StaticSelection
from routeyard.selection.sticky import StickySelection

__all__ = [
    "SELECTION_ALGORITHMS",
    "AlgorithmBuild",
    "CandidateView",
    "CheapestSelection",
    "EloSelection",
    "EmaSelection",
    "FirstHealthySelection",
    "LatencyAwareSelection",
    "LearnedSelection",
    "LinUCBSelection",
    "LoadAwareSelection",
    "OnlineAlgorithm",
    "QualityCostSelection",
    "Selection",
    "SelectionAlgorithm",
    "StaticSelection",
    "StickySelection",
    "ThompsonSelection",
    "make_algorithm",
]
