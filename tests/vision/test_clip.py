"""CLIP-style contrastive pre-training: the symmetric InfoNCE against a hand-written form, the temperature
clamp, batches without repeated captions, and that the encoder learns (retrieval above chance)."""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from vision_tiny import WordTok, tiny_model

from herd.vision.clip import ClipConfig, ClipModel, clip_loss, distinct_caption_batch, retrieval, train_clip


def test_symmetric_infonce_matches_the_definition():
    g = torch.Generator().manual_seed(0)
    img, txt = F.normalize(torch.randn(5, 8, generator=g), dim=-1), F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    scale = torch.tensor(math.log(1 / 0.07))
    s = img @ txt.T / 0.07
    i2t = -sum(s[i, i] - torch.logsumexp(s[i], 0) for i in range(5)) / 5
    t2i = -sum(s[i, i] - torch.logsumexp(s[:, i], 0) for i in range(5)) / 5
    torch.testing.assert_close(clip_loss(img, txt, scale), (i2t + t2i) / 2, rtol=1e-5, atol=1e-6)
    same = F.normalize(torch.ones(4, 8), dim=-1)  # all similarities equal: chance, ln B
    assert clip_loss(same, same, scale).item() == torch.tensor(4.0).log().item()
    big = clip_loss(img, txt, torch.tensor(20.0))  # the scale is clamped at 100
    torch.testing.assert_close(big, clip_loss(img, txt, torch.tensor(math.log(100.0))))


def test_batches_never_repeat_a_caption():
    rows = [{"id": str(i), "caption": f"digit {i % 3}"} for i in range(30)]
    batch = distinct_caption_batch(random.Random(0), rows, 8)
    assert len(batch) == 3 and len({r["caption"] for r in batch}) == 3


def test_contrastive_training_learns_to_retrieve():
    # 12 images of 4 solid colours at random brightness; captions name the colour.
    colours = {"red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0), "grey": (0.0, 0, 0)}
    g = torch.Generator().manual_seed(0)
    rows, images = [], {}
    for i in range(16):
        name = list(colours)[i % 4]
        base = torch.tensor(colours[name])[:, None, None].expand(3, 32, 32)
        images[str(i)] = (base + 0.3 * torch.randn(3, 32, 32, generator=g))[None]
        rows.append({"id": str(i), "caption": f"a {name} picture"})
    cfg = ClipConfig(steps=40, lr=3e-3, batch_size=4, warmup=2)
    clip = ClipModel(tiny_model().encoder, WordTok.vocab_size, cfg)
    before = retrieval(clip, WordTok(), images, rows)
    assert before["chance"] == 0.25 and before["n"] == 16
    losses = train_clip(clip, WordTok(), images, rows, cfg)
    after = retrieval(clip, WordTok(), images, rows)
    assert len(losses) == cfg.steps and sum(losses[-5:]) / 5 < math.log(4) - 0.5  # chance is ln 4
    assert before["recall_at_1"] <= 0.5 and after["recall_at_1"] == 1.0
