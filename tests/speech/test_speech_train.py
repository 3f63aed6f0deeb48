"""The speech training stage end to end on a few utterances (seconds): it runs, records and saves."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from herd.speech.bestrq import BestRQConfig
from herd.speech.data import SpeechDataConfig, run_speech_data
from herd.speech.train import (
    CTC_CHARS,
    CTCHead,
    SpeechTrainConfig,
    TinyLMConfig,
    ctc_greedy,
    ctc_loss,
    ctc_targets,
    run_speech_train,
    spec_augment,
    wer_with_ci,
)

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


def test_ctc_head_upsamples_frames_and_greedy_decodes_a_planted_path():
    head = CTCHead(5, upsample=2)
    logp, m = head(torch.randn(2, 5, 5), torch.tensor([5, 3]))
    assert logp.shape == (2, 10, len(CTC_CHARS) + 1) and m.tolist() == [10, 6]
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(2, 10))
    # Frame t (a one-hot input) emits slots 2t and 2t + 1 of the path "hh_el_lo__": repeats merge, the blank
    # keeps the two l's apart; frames past the length (4 of 5 here: slots 8, 9) are never read.
    path = [CTC_CHARS.index(c) + 1 if c != "_" else 0 for c in "hh_el_lo"] + [5, 5]
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.zero_()
        for slot, k in enumerate(path):
            head.proj.weight[(slot % 2) * head.n_classes + k, slot // 2] = 10.0
    assert ctc_greedy(head, torch.eye(5)[None], torch.tensor([4])) == ["hello"]
    assert ctc_greedy(head, torch.eye(5)[None], torch.tensor([5])) == ["helloc"]


def test_ctc_loss_falls_when_the_planted_labels_are_likely():
    head = CTCHead(len(CTC_CHARS) + 1, upsample=1)
    text = "ab"
    want = ctc_targets(text)
    with torch.no_grad():
        head.proj.weight.copy_(torch.eye(len(CTC_CHARS) + 1) * 10.0)
        head.proj.bias.zero_()
    right = torch.nn.functional.one_hot(torch.tensor([want[0], 0, want[1], 0]), len(CTC_CHARS) + 1).float()[None]
    wrong = right.flip(1)
    assert ctc_loss(head, right, torch.tensor([4]), [text]) < 0.01 < ctc_loss(head, wrong, torch.tensor([4]), [text])


def test_spec_augment_masks_bands_and_spans_deterministically():
    x, n = torch.randn(3, 300, 80) * 2 + 5, torch.tensor([300, 250, 120])
    a, b = spec_augment(x.clone(), n, random.Random(0)), spec_augment(x.clone(), n, random.Random(0))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, spec_augment(x.clone(), n, random.Random(1)))
    zero_bins = (a[0] == 0).all(0).sum()  # whole mel bins zeroed: the two frequency bands
    assert 0 < zero_bins <= 30
    assert abs(float(a[0, :, (a[0] != 0).any(0)].mean())) < 0.2  # normalized before masking: zero is the mean
    assert (a[2, 120:] == 0).all()  # padding stays zero
