"""herd.train."""
