"""herd.parallel."""
