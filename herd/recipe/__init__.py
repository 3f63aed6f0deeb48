"""herd.recipe."""
