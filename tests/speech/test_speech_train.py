"""The speech training stage end to end on a few utterances (seconds): it runs, records and saves."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from herd.speech.bestrq import BestRQConfig
from herd.speech.data import SpeechDataConfig, run_speech_data
from herd.speech.train import SpeechTrainConfig, TinyLMConfig, run_speech_train, wer_with_ci

pytest.importorskip("espeakng_loader")
pytest.importorskip("jiwer")


def test_wer_with_ci_counts_word_errors():
    res = wer_with_ci(["the cat sat", "a dog"], ["The cat, sat!", "a cat barked"])
    assert res["wer"] == pytest.approx(2 / 5)  # punctuation and case ignored; 1 sub + 1 ins in row 2
    assert res["ci_low"] <= res["wer"] <= res["ci_high"] and res["n"] == 2


def test_speech_train_stage_runs_and_records(tmp_path):
    data = SpeechDataConfig(out=str(tmp_path / "data"), max_sentences=8, voices_per_sentence=1, test_fraction=0.3)
    run_speech_data(data)
    cfg = SpeechTrainConfig(data=data.out, out=str(tmp_path / "model"), tiny_lm=TinyLMConfig(steps=2, vocab_size=600),
                            bestrq=BestRQConfig(codebook_size=32), pretrain_steps=2, sft_steps=2, batch_size=2,
                            max_eval=2, tasks=["asr"])  # fmt: skip
    m = run_speech_train(cfg)
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["trained"]["test_sentences"]["asr"]["n"] == 2
    assert m.counts["wer_untrained_test_voices"] is not None
    enc = load_file(tmp_path / "model" / "encoder.safetensors")
    assert "subsample.proj.weight" in enc
    assert (tmp_path / "model" / "lm" / "tokenizer.model").is_file()  # the tiny LM as a herd model folder
    assert (tmp_path / "model" / "lm" / "config.json").is_file()
