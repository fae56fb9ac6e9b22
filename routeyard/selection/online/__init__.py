"""Online selection: learners that improve from feedback while they serve.

Importing this package registers `ema`, `thompson`, `linucb` and `elo`.
"""

from routeyard.selection.online.bandits import EmaSelection, ThompsonSelection
from routeyard.selection.online.base import OnlineAlgorithm
from routeyard.selection.online.elo import EloSelection
from routeyard.selection.online.linucb import LinUCBSelection

__all__ = [
    "EloSelection",
    "EmaSelection",
    "LinUCBSelection",
    "OnlineAlgorithm",
    "ThompsonSelection",
]
