"""The package version, in its own module so that outputs can stamp it without importing the package root."""
from __future__ import annotations

__version__ = "0.1.0"
