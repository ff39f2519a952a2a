"""Which inference backend is fastest for a vision model on this CPU, and do they all agree."""

from __future__ import annotations

__version__ = "0.1.0"
