"""The recipe's `speech` stage: its place and switch, a run on a tiny config, and its report section."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.recipe.config import STAGES, load_recipe
from herd.recipe.report import write_report
from herd.recipe.run import Recipe
from herd.speech.recipe import RecipeSpeechSection, run_recipe_speech

TINY = ["data.max_sentences=8", "data.voices_per_sentence=1", "data.test_fraction=0.3", "data.dialogue=0",
        "train.tiny_lm.steps=2", "train.tiny_lm.vocab_size=600", "train.bestrq.codebook_size=32",
        "train.pretrain_steps=2", "train.ctc_steps=2", "train.sft_steps=2", "train.batch_size=2",
        "train.max_eval=2", "train.token_ctc_steps=2"]  # fmt: skip


def test_speech_stage_comes_after_safety_and_is_opt_in() -> None:
    assert STAGES.index("safety") < STAGES.index("speech") < STAGES.index("report")
    assert not load_recipe(None).speech.enabled
    with pytest.raises(ValueError, match=r"speech\.overrides: 'sft_steps=2' must start with 'data\.' or 'train\.'"):
        run_recipe_speech(RecipeSpeechSection(enabled=True, overrides=["sft_steps=2"]), Path("x"))


def test_recipe_speech_stage_runs_and_reaches_the_report(tmp_path) -> None:
    pytest.importorskip("espeakng_loader")
    pytest.importorskip("jiwer")
    overrides = [f"run_dir={tmp_path / 'run'}", "speech.enabled=true", f"speech.overrides={TINY!r}"]
    Recipe(load_recipe(None, overrides)).run("speech")
    model = tmp_path / "run" / "speech" / "model"
    assert (model / "speech_config.json").is_file()
    assert (tmp_path / "run" / "speech" / "data" / "examples.jsonl").is_file()
    from herd.core.manifest import Manifest

    asr = Manifest.read(model).counts["asr"]
    text = write_report({"speech": model}, tmp_path / "report").read_text()
    assert '<section id="speech">' in text
    for split in ("test_sentences", "test_voices"):
        r = asr[split]["trained"]
        assert f"{r['wer']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]" in text  # the stage's own numbers
    assert "speech: not run." in write_report({}, tmp_path / "r2").read_text()
