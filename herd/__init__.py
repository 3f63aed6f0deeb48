"""herd: the Llama 3 recipe ("The Llama 3 Herd of Models", arXiv 2407.21783) end to end."""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy top-level API: `import herd` stays cheap; torch loads on first use.
    if name in ("load_model", "build_model", "generate"):
        import herd.model

        return getattr(herd.model, name)
    if name == "load_tokenizer":
        from herd.tokenizer import load_tokenizer

        return load_tokenizer
    raise AttributeError(f"module 'herd' has no attribute {name!r}")
