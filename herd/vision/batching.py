"""One training batch of (image id, prompt, target) items for the vision adapter, shared by SFT
(`herd.vision.train`) and DPO (`herd.vision.dpo`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from herd.vision.adapter import VisionLanguageModel


def batch(model: VisionLanguageModel, tok: Any, images: dict[str, Tensor], items: list[tuple[str, str, str]]):
    """tokens (B, T) with <|image|> first, labels (B, T) (-100 outside the target), image tokens, cross mask."""
    image_id, pad = model.cfg.image_token_id, 0
    seqs, labels = [], []
    for _, prompt, target in items:
        p, t = [image_id, *tok.encode(prompt)], tok.encode(target)
        seqs.append(p + t)
        labels.append([-100] * len(p) + t)
    T = max(len(s) for s in seqs)
    tokens = torch.tensor([s + [pad] * (T - len(s)) for s in seqs])
    target = torch.tensor([lab + [-100] * (T - len(lab)) for lab in labels])
    pixels = torch.stack([images[i] for i, _, _ in items])[:, None]  # (B, 1, 1, C, H, W)
    ids, mask = torch.ones(len(items), 1, dtype=torch.long), torch.ones(len(items), 1, 1, dtype=torch.long)
    cross = torch.ones(len(items), T, 1, 1, dtype=torch.long)  # the image token is first: every token sees it
    return tokens, target, model.encode_images(pixels, ids, mask), cross
