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
    CopyDocuments,
    CTCHead,
    SpeechTrainConfig,
    TinyLMConfig,
    best_path,
    ctc_greedy,
    ctc_loss,
    ctc_targets,
    run_speech_train,
    spec_augment,
    token_ctc_loss,
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


def test_speech_train_with_the_token_interface_reloads_and_transcribes(tmp_path):
    from herd.speech.infer import load_speech_model, respond

    data = SpeechDataConfig(out=str(tmp_path / "data"), max_sentences=8, voices_per_sentence=1, test_fraction=0.3)
    run_speech_data(data)
    cfg = SpeechTrainConfig(data=data.out, out=str(tmp_path / "model"), tasks=["asr"], batch_size=2, max_eval=2,
                            tiny_lm=TinyLMConfig(steps=2, vocab_size=600, copy_fraction=0.5, copy_sentence_fraction=0.5,
                                                 copy_prompt_fraction=0.5),
                            pretrain_steps=0, ctc_steps=2, ctc_weight=0.3, adapter_output="tokens", token_ctc_steps=2,
                            sft_steps=2)  # fmt: skip
    run_speech_train(cfg)
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["adapter_token_ctc"]["test_voices"]["n"] == 2
    assert metrics["token_ctc_loss_first_last"][0] is not None
    assert "token_head.weight" in load_file(tmp_path / "model" / "adapter.safetensors")
    model, tok = load_speech_model(tmp_path / "model")  # rebuilt from speech_config.json: the same interface
    assert model.adapter.token_head.out_features == model.lm.cfg.vocab_size + 1
    assert isinstance(respond(model, tok, torch.zeros(16_000)), str)
    with pytest.raises(ValueError, match="adapter_output"):
        run_speech_train(SpeechTrainConfig(data=data.out, out=str(tmp_path / "m2"), tasks=["asr"], adapter_output="tok",
                                           tiny_lm=TinyLMConfig(steps=1, vocab_size=600)))  # fmt: skip


def test_copy_documents_train_only_the_second_copy():
    from herd.tokenizer import train_tokenizer

    sentences, prompts = ["the cat sat on the mat", "a dog ran home"], ["Repeat after me in English:"]
    tok = train_tokenizer(sentences + prompts, 600)
    rng = random.Random(0)
    always = CopyDocuments(tok, sentences, prompts, TinyLMConfig(copy_sentence_fraction=1.0, copy_prompt_fraction=1.0))
    for _ in range(5):
        x, y = always.draw(rng)
        ids = [*x, y[-1]]  # the whole document
        head = [tok.bos_id, *tok.encode(prompts[0])]
        assert ids[: len(head)] == head
        body = tok.decode(ids[len(head) : -1])
        first, second = body.split("\n")
        assert first == second and first.strip() in sentences
        labelled = [t for t in y if t != -100]
        assert labelled == [*tok.encode(second), tok.eot_id] and len(y) == len(x)
        assert y[-len(labelled) :] == labelled  # labels sit on the second copy's positions (next-token shift)
    never = CopyDocuments(tok, sentences, prompts, TinyLMConfig())
    x, _ = never.draw(rng)
    body = tok.decode(x[1:])
    assert "Repeat" not in body and body.split("\n")[0].strip() not in sentences  # random strings of their words
    assert set(body.split("\n")[0].split()) <= set(" ".join(sentences).split())


def test_token_ctc_greedy_and_loss_on_a_planted_path():
    V = 6
    path = [2, 2, V, 2, 4, V, V, 5, 1]  # the last frame is past the length
    logits = torch.nn.functional.one_hot(torch.tensor([path]), V + 1).float() * 20.0
    assert best_path(logits, torch.tensor([8]), blank=V) == [[2, 2, 4, 5]]
    right = token_ctc_loss(logits, torch.tensor([8]), [[2, 2, 4, 5]])
    assert right < 0.01 < token_ctc_loss(logits, torch.tensor([8]), [[5, 4, 2, 2]])
