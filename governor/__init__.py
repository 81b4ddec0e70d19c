"""govd: a GPU DVFS governor."""

__version__ = "0.1.0"
