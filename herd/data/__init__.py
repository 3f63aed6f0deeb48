"""herd.data."""
