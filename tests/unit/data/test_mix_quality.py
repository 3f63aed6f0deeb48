"""Mix buckets and weights worked out by hand; the classifier head; judge labels by rank."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("datatrove")

from datatrove.data import Document

from herd.data.mix import TopicDownsample, mix_bucket, mix_weights
from herd.data.quality import head_score, softmax, stable_fraction, train_head


def test_mix_bucket_rules() -> None:
    assert mix_bucket({"language": "code"}, 0.5, 0.5) == "code"
    assert mix_bucket({"language": "en", "scores": {"code": 0.7}}, 0.5, 0.5) == "code"
    assert mix_bucket({"language": "de", "scores": {"math": 0.9, "code": 0.9}}, 0.5, 0.5) == "multilingual"
    assert mix_bucket({"language": "en", "scores": {"math": 0.9}}, 0.5, 0.5) == "math_reasoning"
    assert mix_bucket({"language": "en"}, 0.5, 0.5) == "general"


def test_mix_weights_by_hand() -> None:
    parts = {"general/en": {"docs": 3, "bytes": 0, "tokens": 600}, "code/code": {"docs": 1, "bytes": 0, "tokens": 200}}
    w = mix_weights(parts, {"general": 0.5, "code": 0.25, "math_reasoning": 0.25})
    # math has no data: targets renormalize over general and code -> 2/3 and 1/3 of 800 drawn tokens
    assert w["buckets"]["general"]["weight"] == pytest.approx(2 / 3, abs=1e-4)
    assert w["buckets"]["code"]["epochs"] == pytest.approx((1 / 3) * 800 / 200, abs=1e-3)
    assert w["missing_buckets"] == ["math_reasoning"]


def test_topic_downsample_is_deterministic() -> None:
    f = TopicDownsample({"arts_entertainment": 0.5}, seed=0)
    docs = [Document(text="x", id=f"d{i}", metadata={"topic": "arts_entertainment"}) for i in range(400)]
    reasons = [f.reject(d) for d in docs]
    kept = reasons.count(None)
    assert 160 < kept < 240 and set(reasons) == {None, "downsampled_arts_entertainment"}
    assert reasons == [f.reject(d) for d in docs]
    assert f.reject(Document(text="x", id="z", metadata={"topic": "health"})) is None
    assert stable_fraction("a") == stable_fraction("a") != stable_fraction("a", seed=1)


def test_head_learns_separable_labels() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-1, 0.3, (20, 4)), rng.normal(1, 0.3, (20, 4))])
    y = np.array([0] * 20 + [1] * 20)
    h = train_head(x, y, 2)
    p = softmax(x @ h["w"] + h["b"])
    assert (p.argmax(1) == y).all()
    assert head_score(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])).tolist() == [0.0, 1.0]
