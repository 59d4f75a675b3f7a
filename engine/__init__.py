"""Stampede's domain core: campaigns, claims and their Redis/store adapters.

No HTTP here: `Engine` is usable as a library (see `engine.service`).
"""

from engine.outcomes import Outcome
from engine.service import Engine
from engine.settings import Settings

__all__ = ["Engine", "Outcome", "Settings"]
