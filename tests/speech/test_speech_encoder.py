"""The speech front end and Conformer against references nobody here wrote (transformers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from herd.speech.conformer import ConformerBlock, ConformerConfig, ConformerEncoder, get_preset, param_count
from herd.speech.frontend import FrameStacker, LogMel, mel_filter_bank, stack_frames

transformers = pytest.importorskip("transformers")
espeak = pytest.importorskip("espeakng_loader")


@pytest.fixture(scope="module")
def speech_wav() -> np.ndarray:
    from herd.speech.synth import Voice, synthesize

    return synthesize("The quick brown fox jumps over the lazy dog.", Voice())


def test_mel_filter_bank_matches_transformers():
    from transformers.audio_utils import mel_filter_bank as ref

    want = ref(num_frequency_bins=201, num_mel_filters=80, min_frequency=0.0, max_frequency=8000.0,
               sampling_rate=16000, norm="slaney", mel_scale="slaney")  # fmt: skip
    got = mel_filter_bank().numpy()
    assert got.shape == (201, 80)
    # Both in float64; peak filter value is 0.026, so 1e-9 is a relative agreement of ~4e-8.
    np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)


def test_log_mel_matches_whisper_feature_extractor(speech_wav):
    fe = transformers.WhisperFeatureExtractor(feature_size=80)
    want = fe._np_extract_fbank_features(speech_wav[None].astype(np.float64), "cpu")[0].T  # (T, 80)
    got = LogMel()(torch.from_numpy(speech_wav)[None].double())[0].numpy()
    assert got.shape == want.shape == (len(speech_wav) // 160, 80)
    # The reference's spectrogram returns float32 (audio_utils default dtype): 1e-6 covers its rounding
    # after log10 and scaling (features span about [-1, 2]).
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    got32 = LogMel()(torch.from_numpy(speech_wav)[None])[0].numpy()
    np.testing.assert_allclose(got32, want, atol=1e-4, rtol=0)


def test_stacking_gives_40ms_frames_in_time_order():
    feats = torch.arange(2 * 10 * 3, dtype=torch.float32).view(2, 10, 3)
    stacked = stack_frames(feats, 4)
    assert stacked.shape == (2, 2, 12)  # 10 frames of 10 ms → two whole 40 ms frames, remainder dropped
    assert torch.equal(stacked[1, 1], feats[1, 4:8].reshape(-1))
    assert FrameStacker(80, 4, 32)(torch.randn(3, 101, 80)).shape == (3, 25, 32)


def _hf_layer(cfg: ConformerConfig):
    from transformers.models.wav2vec2_conformer.modeling_wav2vec2_conformer import (
        Wav2Vec2ConformerEncoderLayer,
        Wav2Vec2ConformerRotaryPositionalEmbedding,
    )

    hf_cfg = transformers.Wav2Vec2ConformerConfig(
        hidden_size=cfg.dim, num_attention_heads=cfg.n_heads, intermediate_size=cfg.ffn_dim,
        conv_depthwise_kernel_size=cfg.conv_kernel, hidden_act="swish", position_embeddings_type="rotary",
        rotary_embedding_base=int(cfg.rope_theta), hidden_dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, conformer_conv_dropout=0.0,
    )  # fmt: skip
    hf_cfg._attn_implementation = "eager"
    return Wav2Vec2ConformerEncoderLayer(hf_cfg), Wav2Vec2ConformerRotaryPositionalEmbedding(hf_cfg)


def _copy_weights(ours: ConformerBlock, hf) -> None:
    pairs = {
        "ffn1.norm": "ffn1_layer_norm", "ffn1.w1": "ffn1.intermediate_dense", "ffn1.w2": "ffn1.output_dense",
        "attention.norm": "self_attn_layer_norm", "attention.wq": "self_attn.linear_q",
        "attention.wk": "self_attn.linear_k", "attention.wv": "self_attn.linear_v",
        "attention.wo": "self_attn.linear_out", "conv.norm": "conv_module.layer_norm",
        "conv.pointwise1": "conv_module.pointwise_conv1", "conv.depthwise": "conv_module.depthwise_conv",
        "conv.batch_norm": "conv_module.batch_norm", "conv.pointwise2": "conv_module.pointwise_conv2",
        "ffn2.norm": "ffn2_layer_norm", "ffn2.w1": "ffn2.intermediate_dense", "ffn2.w2": "ffn2.output_dense",
        "final_norm": "final_layer_norm",
    }  # fmt: skip
    theirs = hf.state_dict()
    state = {}
    for mine, their in pairs.items():
        for key in ours.state_dict():
            if key.startswith(mine + "."):
                state[key] = theirs[their + key[len(mine) :]]
    ours.load_state_dict(state, strict=True)


def test_conformer_block_matches_wav2vec2_conformer_layer():
    torch.manual_seed(0)
    cfg = ConformerConfig(dim=64, n_layers=1, n_heads=4, ffn_dim=96, conv_kernel=7, rope="input")
    hf, rotary = _hf_layer(cfg)
    hf = hf.double().eval()
    with torch.no_grad():  # non-trivial norms and BatchNorm statistics, so every term is exercised
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p) if name.endswith("weight") else 0.1 * torch.randn_like(p))
        hf.conv_module.batch_norm.running_mean.normal_(0, 0.1)
        hf.conv_module.batch_norm.running_var.uniform_(0.5, 1.5)
    ours = ConformerBlock(cfg).double().eval()
    _copy_weights(ours, hf)
    x = torch.randn(2, 23, cfg.dim, dtype=torch.float64)
    with torch.no_grad():
        want = hf(x, relative_position_embeddings=rotary(x))
        enc = ConformerEncoder(cfg).double()
        from herd.model.layers import rope_cos_sin

        cos, sin = rope_cos_sin(enc.inv_freq, torch.arange(23))
        got = ours(x, cos.double(), sin.double())
    # float64 on both sides: the only differences are summation orders (~1e-15 relative).
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


def test_qk_rope_attends_by_relative_position():
    # With RoPE on queries and keys, attention scores depend on position differences only: a block's
    # output for a sequence is the same whether its frames are numbered from 0 or from 100.
    torch.manual_seed(0)
    cfg = ConformerConfig(dim=32, n_layers=1, n_heads=2, ffn_dim=48, rope="qk")
    block = ConformerBlock(cfg).eval()
    enc = ConformerEncoder(cfg)
    from herd.model.layers import rope_cos_sin

    x = torch.randn(1, 9, 32)
    a = block(x, *rope_cos_sin(enc.inv_freq, torch.arange(9)))
    b = block(x, *rope_cos_sin(enc.inv_freq, torch.arange(100, 109)))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    c = block(x.flip(1), *rope_cos_sin(enc.inv_freq, torch.arange(9))).flip(1)
    assert not torch.allclose(a, c, atol=1e-3)  # and it does see order


@pytest.mark.parametrize("utterance_norm", [False, True])
def test_padding_does_not_change_real_frames(utterance_norm):
    torch.manual_seed(0)
    enc = ConformerEncoder(get_preset("tiny", utterance_norm=utterance_norm)).eval()
    feats = torch.randn(1, 40, 80) * 3 + 2  # off-center, so normalization over padding would show
    alone, _ = enc(feats)
    padded = torch.cat([feats, torch.randn(1, 24, 80)], dim=1)
    both, lengths = enc(torch.cat([padded, torch.randn(1, 64, 80)]), torch.tensor([40, 64]))
    assert lengths.tolist() == [10, 16]
    torch.testing.assert_close(both[0, :10], alone[0], atol=1e-5, rtol=1e-5)


def test_presets_reach_the_papers_1b_encoder():
    cfg = get_preset("1B")
    assert (cfg.n_layers, cfg.dim, cfg.ffn_dim, cfg.n_heads, cfg.conv_kernel) == (24, 1536, 4096, 24, 7)
    with torch.device("meta"):
        n = param_count(ConformerEncoder(cfg))
    assert 0.95e9 < n < 1.1e9, n  # [P §8.1]: "a Conformer with 1B parameters"
    with pytest.raises(ValueError, match="did you mean 'tiny'"):
        get_preset("tinyy")


def test_utterance_norm_removes_per_bin_offsets_and_scale():
    """With utterance_norm, a constant shift and a scale of each mel bin (loudness, channel) change nothing."""
    torch.manual_seed(0)
    enc = ConformerEncoder(get_preset("tiny", utterance_norm=True)).eval()
    feats = torch.randn(2, 48, 80)
    moved = feats * torch.rand(1, 1, 80).add(0.5) + torch.randn(1, 1, 80)
    torch.testing.assert_close(enc(moved)[0], enc(feats)[0], atol=1e-4, rtol=1e-4)
