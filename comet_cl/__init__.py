"""comet-cl: a continual-learning benchmark suite built around COMET."""

__version__ = "0.1.0"
