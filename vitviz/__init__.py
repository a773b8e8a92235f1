"""vitviz: a small instrumented Vision Transformer and the pieces that explain it."""

from vitviz import allocator

__version__ = "0.1.0"

# Every entry point (the app, the training CLI, the benchmarks, the tests) imports vitviz first,
# so the allocator is tuned once per process before any tensor work starts.
allocator.keep_freed_memory()
