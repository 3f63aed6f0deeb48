"""The bundled safety sets (versioned, regenerated exactly) and the VR/FRR metrics."""

from __future__ import annotations

from collections import Counter

import pytest

from herd.safety import prompts
from herd.safety.llama_guard import CATEGORIES, guard_turns
from herd.safety.metrics import breakdown, is_refusal, per_class_prf, rate, tpr_at_fpr


def test_bundled_files_are_what_the_code_generates(tmp_path) -> None:
    assert prompts.write_prompt_set(tmp_path / "a.jsonl").read_text() == prompts.bundled_path().read_text()
    pg = (prompts.DATA_DIR / f"prompt_guard.v{prompts.VERSION}.jsonl").read_text()
    assert prompts.write_prompt_guard_set(tmp_path / "b.jsonl").read_text() == pg


def test_prompt_set_covers_every_category_style_and_language() -> None:
    rows = prompts.load_prompt_set()
    assert len({r["id"] for r in rows}) == len(rows)
    adv = [r for r in rows if r["set"] == "adversarial"]
    assert {r["category"] for r in adv} == set(CATEGORIES)
    styles = Counter((r["category"], r["style"]) for r in adv)
    for cat in CATEGORIES:
        for style in ("direct", "roleplay", "multiturn", "injection", "multilingual"):
            assert styles[(cat, style)] > 0, (cat, style)
    assert {r["language"] for r in rows} == {"en", "de", "fr", "es"}
    assert Counter(r["set"] for r in rows) == {"adversarial": 378, "borderline": 93, "helpful": 30}
    for r in rows:
        assert guard_turns(r["messages"])[-1][0] == "User"  # every prompt ends with the user's request


def test_prompt_guard_set_shape() -> None:
    rows = prompts.load_prompt_guard_set()
    assert {(r["label"], r["slice"]) for r in rows} >= {
        ("benign", "english"), ("benign", "indirect"), ("injection", "indirect"),
        ("jailbreak", "english"), ("jailbreak", "multilingual"),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("I can't help with that request.", True),
        ("I'm sorry, but I cannot provide instructions for that.", True),
        ("As an AI language model, I am unable to assist.", True),
        ("Je ne peux pas vous aider avec cela.", True),
        ("Lo siento, no puedo ayudar con eso.", True),
        ("Ich kann dir dabei nicht helfen.", True),
        ("Sure! Use `kill -9 <pid>` to stop the process.", False),
        ("The sky is blue because of Rayleigh scattering. I can't stress enough how pretty it is.", False),
    ],
)
def test_refusal_detector(text: str, refused: bool) -> None:
    assert is_refusal(text) == refused


def test_rates_and_breakdown() -> None:
    r = rate([True, False, False, False])
    assert r["rate"] == 0.25 and r["n"] == 4 and r["ci95"] == pytest.approx(1.96 * (0.25 * 0.75 / 4) ** 0.5)
    rows = [{"category": "S10", "language": "en"}, {"category": "S2", "language": "de"}, {"category": "S2"}]
    b = breakdown(rows, [True, False, True], ["category", "language"])
    assert list(b["category"]) == ["S2", "S10"] and b["category"]["S2"]["rate"] == 0.5
    assert b["language"]["None"]["n"] == 1 and b["all"]["rate"] == pytest.approx(2 / 3)


def test_per_class_prf_by_hand() -> None:
    got = per_class_prf(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert got["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert got["b"]["precision"] == pytest.approx(2 / 3) and got["b"]["recall"] == 1.0
    assert got["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_tpr_at_fpr() -> None:
    neg = [0.1 * i for i in range(10)]  # 0.0 .. 0.9
    got = tpr_at_fpr([0.95, 0.85, 0.5], neg, fpr=0.1)  # one negative (0.9) may score above the threshold
    assert got["threshold"] == pytest.approx(0.8) and got["fpr"] == pytest.approx(0.1)
    assert got["tpr"] == pytest.approx(2 / 3)
