"""herd.eval."""
