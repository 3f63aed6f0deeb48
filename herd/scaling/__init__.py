"""herd.scaling."""
