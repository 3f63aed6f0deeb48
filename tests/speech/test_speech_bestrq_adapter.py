"""BEST-RQ targets and masking, and the adapter's place in a frozen herd LM."""

from __future__ import annotations

import math

import torch

from herd.model import build_model, get_preset
from herd.speech.adapter import ADAPTER_PRESETS, SpeechAdapter, SpeechLM
from herd.speech.bestrq import BestRQ, BestRQConfig, span_mask
from herd.speech.conformer import ConformerEncoder
from herd.speech.conformer import get_preset as conformer_preset


def _bestrq(seed: int, codebook_size: int = 512) -> BestRQ:
    torch.manual_seed(0)
    return BestRQ(ConformerEncoder(conformer_preset("tiny")), BestRQConfig(codebook_size=codebook_size, seed=seed))


def test_bestrq_targets_are_deterministic_for_a_seed():
    feats, n = torch.randn(2, 64, 80), torch.tensor([64, 48])
    a, b, c = _bestrq(1).targets(feats, n), _bestrq(1).targets(feats, n), _bestrq(2).targets(feats, n)
    assert a.shape == (2, 16, 16)  # 16 frames of 40 ms, 16 codebooks [P §8.2]
    assert torch.equal(a, b)
    assert (a[:, :12] != c[:, :12]).float().mean() > 0.9  # another seed draws other codebooks (real frames)
    assert int(a.max()) < 512 and int(a.min()) >= 0
    # Codes depend on the features (not a constant): two utterances differ almost everywhere.
    assert (a[0, :12] != a[1, :12]).float().mean() > 0.5


def test_bestrq_paper_sizes():
    q = BestRQ(ConformerEncoder(conformer_preset("tiny")), BestRQConfig()).quantizer
    assert q.projection.shape == (16, 320, 16)  # 4 × 80 stacked → 16 dims, per codebook
    assert q.codebooks.shape == (16, 8192, 16)
    torch.testing.assert_close(q.codebooks.norm(dim=-1), torch.ones(16, 8192))
    assert not list(q.parameters())  # frozen: buffers only


def test_span_mask_rate_matches_probability():
    p, span, T, B = 0.025, 32, 4000, 50
    g = torch.Generator().manual_seed(0)
    mask = span_mask(torch.full((B,), T), T, p, span, g)
    # A frame far from the start is covered unless none of the `span` frames up to it started a span.
    want = 1 - (1 - p) ** span  # 0.555
    got = mask[:, span:].float().mean().item()
    n = B * (T - span)
    # Coverage of neighbouring frames is correlated over a span: the binomial CI widened by √(2·span).
    half = 1.96 * math.sqrt(want * (1 - want) / n) * math.sqrt(2 * span)
    assert abs(got - want) < half, (got, want, half)
    # A masked run begins where a span starts and the frame before was not covered: p·(1 − p)^span.
    edges = (mask[:, span + 1 :] & ~mask[:, span:-1]).float().mean().item()
    want_edges = p * (1 - p) ** span  # 0.0111
    assert abs(edges - want_edges) < 1.96 * math.sqrt(want_edges / n) * 1.5, (edges, want_edges)
    short = span_mask(torch.tensor([10, 0]), 20, 1.0, 4)
    assert short[0, :10].all() and not short[0, 10:].any() and not short[1].any()  # padding never masked


def test_bestrq_loss_trains_on_masked_frames_only():
    model = _bestrq(0, codebook_size=64)
    cfg = model.cfg
    model.cfg = BestRQConfig(codebook_size=64, mask_prob=0.2, mask_span=2)
    out = model(torch.randn(3, 80, 80), torch.tensor([80, 60, 40]), torch.Generator().manual_seed(0))
    assert out["masked"] > 0
    assert abs(out["loss"].item() - math.log(64)) < 1.0  # untrained: near uniform over 64 codes
    out["loss"].backward()
    assert model.encoder.layers[0].ffn1.w1.weight.grad is not None
    model.cfg = cfg


def _speech_lm() -> SpeechLM:
    torch.manual_seed(0)
    lm = build_model(get_preset("debug"), seed=0)
    enc = ConformerEncoder(conformer_preset("tiny"))
    return SpeechLM(lm, enc, SpeechAdapter(ADAPTER_PRESETS["tiny"], enc.cfg.dim, lm.cfg.dim)).eval()


def test_adapter_outputs_land_between_the_two_special_tokens():
    model = _speech_lm()
    feats, n = torch.randn(2, 100, 80), torch.tensor([100, 60])
    pre, suf = [[1, 2, 3], [4, 5]], [[6, 7], [8]]
    batch = model.embed(pre, feats, n, suf)
    speech, speech_len = model.speech_embeddings(feats, n)
    assert speech_len.tolist() == [13, 8]  # 100 → 25 frames of 40 ms → 13 of 80 ms; 60 → 15 → 8
    table = model.lm.tok_embeddings.weight
    for i in range(2):
        s, e = batch.speech_spans[i]
        assert s == len(pre[i]) + 1 and e - s == speech_len[i]
        torch.testing.assert_close(batch.embeds[i, : len(pre[i])], table[pre[i]])
        torch.testing.assert_close(batch.embeds[i, s - 1], model.adapter.special[0])
        torch.testing.assert_close(batch.embeds[i, s:e], speech[i, : e - s])
        torch.testing.assert_close(batch.embeds[i, e], model.adapter.special[1])
        torch.testing.assert_close(batch.embeds[i, e + 1 : e + 1 + len(suf[i])], table[suf[i]])
        assert int(batch.lengths[i]) == e + 1 + len(suf[i])
    # Causal LM: the prefix's logits are those of the prefix alone (speech comes later).
    torch.testing.assert_close(model.lm(batch.embeds)[0, :3], model.lm(torch.tensor([pre[0]]))[0], atol=1e-5, rtol=0)


def test_lm_stays_frozen_while_encoder_and_adapter_learn():
    model = _speech_lm().train()
    loss = model.loss([[1, 2]], torch.randn(1, 64, 80), torch.tensor([64]), [[3]], [[9, 10, 11]])
    loss.backward()
    assert all(p.grad is None for p in model.lm.parameters())
    assert model.adapter.special.grad is not None and model.adapter.special.grad.abs().sum() > 0
    assert model.encoder.subsample.proj.weight.grad.abs().sum() > 0


def test_cached_greedy_decoding_matches_a_full_forward():
    model = _speech_lm()
    feats, n = torch.randn(2, 100, 80), torch.tensor([100, 52])
    pre, suf = [[1, 2, 3], [4]], [[6, 7], [8, 9, 10]]
    out = model.transcribe(pre, feats, n, suf, max_new_tokens=4)
    for i in range(2):
        seq = list(suf[i])
        for tok in out[i]:  # each decoded token is the argmax of an uncached forward over the whole row
            b = model.embed([pre[i]], feats[i : i + 1], n[i : i + 1], [seq])
            assert int(model.lm(b.embeds)[0, -1].argmax()) == tok
            seq.append(tok)


def test_adapter_real_frames_ignore_padding_and_match_the_lm_embedding_scale():
    torch.manual_seed(0)
    lm = build_model(get_preset("debug"), seed=0)
    adapter = SpeechAdapter(ADAPTER_PRESETS["tiny"], 96, lm.cfg.dim)
    adapter.match_scale(lm.tok_embeddings.weight)
    h = torch.randn(2, 10, 96)
    alone, n_alone = adapter(h[:1, :6], torch.tensor([6]))
    padded, n = adapter(h, torch.tensor([6, 10]))  # row 0: 6 real frames, then 4 frames of other content
    assert int(n[0]) == int(n_alone[0]) == 3
    torch.testing.assert_close(padded[0, :3], alone[0, :3])  # the last 80 ms frame's kernel reached frame 6
    table_rms = lm.tok_embeddings.weight.pow(2).mean().sqrt()
    torch.testing.assert_close(padded[1].pow(2).mean().sqrt(), table_rms, rtol=0.05, atol=0)  # RMSNorm gain


def test_token_interface_emits_one_lm_embedding_per_ctc_token():
    torch.manual_seed(0)
    lm = build_model(get_preset("debug"), seed=0)
    V = lm.cfg.vocab_size
    adapter = SpeechAdapter(ADAPTER_PRESETS["tiny"], 96, lm.cfg.dim, token_vocab=V)
    assert adapter.proj is None and adapter.token_head.out_features == V + 1  # class V is the CTC blank
    # Best path per frame "7 7 _ 9 9 7 _ 7" + 2 frames past the length: repeats merge, a blank splits 7 from 7.
    path = [7, 7, V, 9, 9, 7, V, 7, 3, 3]
    logits = torch.nn.functional.one_hot(torch.tensor([path]), V + 1).float() * 30.0
    table = lm.tok_embeddings.weight
    emb, n = adapter.collapse(logits, torch.tensor([8]), table)
    assert n.tolist() == [4] and emb.shape == (1, 4, lm.cfg.dim)
    torch.testing.assert_close(emb[0], table[[7, 9, 7, 7]], atol=1e-6, rtol=0)  # peaked softmax → the LM's rows
    # Soft: each emitted frame is the softmax over the V tokens (the blank's mass left out) times the table.
    soft = torch.randn(2, 6, V + 1)
    emb, n = adapter.collapse(soft, torch.tensor([6, 4]), table)
    best = soft.argmax(-1)
    for i in range(2):
        frames = [t for t in range(int([6, 4][i])) if best[i, t] != V and (t == 0 or best[i, t] != best[i, t - 1])]
        assert int(n[i]) == len(frames)
        torch.testing.assert_close(emb[i, : len(frames)], soft[i, frames, :V].softmax(-1) @ table)
    # In the SpeechLM the LM reads them; gradients reach the token head and never the LM.
    enc = ConformerEncoder(conformer_preset("tiny"))
    model = SpeechLM(lm, enc, SpeechAdapter(ADAPTER_PRESETS["tiny"], enc.cfg.dim, lm.cfg.dim, V)).train()
    model.loss([[1, 2]], torch.randn(1, 64, 80), torch.tensor([64]), [[3]], [[9, 10, 11]]).backward()
    assert all(p.grad is None for p in model.lm.parameters())
    assert model.adapter.token_head.weight.grad.abs().sum() > 0
