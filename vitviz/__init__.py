"""vitviz: a small instrumented Vision Transformer and the pieces that explain it."""

__version__ = "0.1.0"
