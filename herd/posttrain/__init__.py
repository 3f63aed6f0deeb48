"""herd.posttrain."""
