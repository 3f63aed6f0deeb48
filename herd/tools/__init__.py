"""Tools the model calls [P §4.3.5]: sandboxed Python, search over the bundled corpus, a calculator."""
