"""Video: shapes through encoder → aggregator → video cross-attention, chunk locality, frame order, and
the zero-gate identity with the text model."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from herd.model.config import get_preset
from herd.vision.adapter import VisionLanguageModel
from herd.vision.config import ENCODER_PRESETS, VisionConfig
from herd.vision.video import VideoConfig, VideoLanguageModel


def tiny_video() -> VideoLanguageModel:
    text = get_preset("debug", n_layers=8)
    cfg = VisionConfig(encoder=replace(ENCODER_PRESETS["tiny"], max_num_tiles=1, image_size=32), text=text,
                       cross_layers=(0, 1, 2, 3, 4, 5))  # fmt: skip
    base = VisionLanguageModel(cfg)
    base.text.init_weights(seed=0)
    base.init_adapter(seed=1)
    model = VideoLanguageModel(base, VideoConfig(aggregate=4, n_latents=6, n_layers=2, every=4)).eval()
    torch.manual_seed(2)
    with torch.no_grad():
        model.aggregator.time_embedding.normal_(0, 0.5)
    return model


def test_shapes_and_placement():
    model = tiny_video()
    assert list(model.video_layers) == ["0", "4"]  # before the 1st and 5th image cross-attention blocks
    frames = torch.randn(2, 8, 3, 32, 32)
    with torch.no_grad():
        video = model.encode_video(frames)
    assert video.shape == (2, 2 * 6, 64)  # 8 frames / 4 per chunk × 6 latents, text width
    with pytest.raises(ValueError, match="not a multiple of aggregate=4"):
        model.encode_video(frames[:, :6])


def test_chunks_are_local_and_order_aware():
    model = tiny_video()
    frames = torch.randn(1, 8, 3, 32, 32)
    with torch.no_grad():
        a = model.encode_video(frames).view(1, 2, 6, 64)
        later = frames.clone()
        later[:, 4:] = torch.randn(1, 4, 3, 32, 32)
        b = model.encode_video(later).view(1, 2, 6, 64)
        swapped = frames[:, [1, 0, 2, 3, 4, 5, 6, 7]]
        c = model.encode_video(swapped).view(1, 2, 6, 64)
    torch.testing.assert_close(a[:, 0], b[:, 0], atol=1e-5, rtol=0)  # chunk 0 ignores frames 4-7
    assert (a[:, 1] - b[:, 1]).abs().max() > 1e-3
    assert (a[:, 0] - c[:, 0]).abs().max() > 1e-4  # the time embedding makes frame order matter


def test_zero_gates_give_the_text_model_and_open_gates_see_the_video():
    model = tiny_video()
    tokens = torch.randint(0, 512, (2, 10))
    with torch.no_grad():
        video = model.encode_video(torch.randn(2, 4, 3, 32, 32))
        assert torch.equal(model(tokens, video), model.base.text(tokens))
        model.video_layers["0"].gate_attn.fill_(1.0)
        assert not torch.allclose(model(tokens, video), model.base.text(tokens))


def test_405b_vision_plan_reproduces_the_papers_numbers():
    from herd.vision.plan import ENCODER_405B, vision_405b_plan

    assert ENCODER_405B.max_num_tiles * ENCODER_405B.n_patches == 2308  # the paper's average image tokens
    text = vision_405b_plan()
    assert "cross-attention blocks: 31" in text and "98.8B in all (paper: ~100B)" in text
    assert "replicated on each of 32 pipeline stages" in text and "4 self-attention + 1 cross-attention" in text
