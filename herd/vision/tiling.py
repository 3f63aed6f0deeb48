"""Image tiling and the text→image attention mask, as Llama 3.2 Vision prepares its inputs [P §7.4].

An image is resized (aspect ratio kept) onto the smallest canvas of up to `max_num_tiles` square tiles
that holds it without shrinking, or the one that shrinks it least (672², 672×336, 1344×336 ... for
336-px tiles), zero-padded at the bottom/right, normalized, and cut into tiles row by row. Its layout
(rows, cols) becomes an aspect-ratio id, 1-based; 0 marks a padding image. Tested against transformers'
MllamaImageProcessorPil and MllamaProcessor's mask helpers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# The normalization of the released Llama 3.2 Vision processor (the CLIP statistics).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def aspect_ratios(max_num_tiles: int) -> list[tuple[int, int]]:
    """Every (rows, cols) with rows·cols ≤ max_num_tiles, in the order that defines aspect-ratio ids."""
    n = max_num_tiles
    return [(r, c) for r in range(1, n + 1) for c in range(1, n + 1) if r * c <= n]


def best_canvas(height: int, width: int, max_num_tiles: int, tile: int) -> tuple[int, int]:
    """The canvas (rows, cols) in tiles: the least upscaling if some canvas needs none shrunk, else the
    least downscaling; ties go to the smallest area."""
    layouts = aspect_ratios(max_num_tiles)
    scales = [min(r * tile / height, c * tile / width) for r, c in layouts]
    up = [s for s in scales if s >= 1]
    pick = min(up) if up else max(scales)
    tied = [lay for lay, s in zip(layouts, scales, strict=True) if s == pick]
    return min(tied, key=lambda rc: rc[0] * rc[1])


def fit_size(height: int, width: int, canvas_h: int, canvas_w: int, tile: int) -> tuple[int, int]:
    """The resized (height, width): each side clipped to [tile, canvas], aspect kept by the tighter side."""
    target_w, target_h = min(max(width, tile), canvas_w), min(max(height, tile), canvas_h)
    scale_h, scale_w = target_h / height, target_w / width
    if scale_w < scale_h:
        return min(math.floor(height * scale_w) or 1, target_h), target_w
    return target_h, min(math.floor(width * scale_h) or 1, target_w)


@dataclass
class TiledImage:
    tiles: Tensor  # (n_tiles, C, tile, tile), normalized
    layout: tuple[int, int]  # (rows, cols)
    aspect_ratio_id: int  # 1-based index into aspect_ratios(max_num_tiles)


def tile_image(image: object, tile: int, max_num_tiles: int = 4, mean=CLIP_MEAN, std=CLIP_STD) -> TiledImage:
    """A PIL image → normalized tiles. Resizes bilinearly with PIL, as the reference processor does."""
    from PIL import Image

    img = image.convert("RGB")  # type: ignore[attr-defined]
    w, h = img.size
    rows, cols = best_canvas(h, w, max_num_tiles, tile)
    new_h, new_w = fit_size(h, w, rows * tile, cols * tile, tile)
    img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    canvas = np.zeros((3, rows * tile, cols * tile), dtype=np.float32)
    arr = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0  # (C, h, w)
    # Normalize before padding would change the pad value; the reference pads with 0 first, then normalizes.
    canvas[:, :new_h, :new_w] = arr
    canvas = (canvas - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    t = torch.from_numpy(canvas).view(3, rows, tile, cols, tile).permute(1, 3, 0, 2, 4).reshape(-1, 3, tile, tile)
    return TiledImage(t.contiguous(), (rows, cols), aspect_ratios(max_num_tiles).index((rows, cols)) + 1)


def pack(batch: list[list[TiledImage]], max_num_tiles: int) -> tuple[Tensor, Tensor, Tensor]:
    """Samples of images → pixels (B, M, tiles, C, H, W), aspect_ratio_ids (B, M), aspect_ratio_mask
    (B, M, tiles); missing images and tiles are zeros (the first tile of a padding image counts as real,
    as in the reference)."""
    B, M = len(batch), max(len(s) for s in batch)
    C, H, W = next(t.tiles.shape[1:] for s in batch for t in s)
    pixels = torch.zeros(B, M, max_num_tiles, C, H, W)
    ids = torch.zeros(B, M, dtype=torch.long)
    mask = torch.zeros(B, M, max_num_tiles, dtype=torch.long)
    mask[:, :, 0] = 1
    for b, sample in enumerate(batch):
        for m, t in enumerate(sample):
            n = t.tiles.shape[0]
            pixels[b, m, :n], ids[b, m], mask[b, m, :n] = t.tiles, t.aspect_ratio_id, 1
    return pixels, ids, mask


def cross_attention_mask(tokens: list[int], image_token_id: int, n_tiles: list[int], max_num_tiles: int) -> Tensor:
    """(T, M, max_num_tiles) 0/1: a text token sees image m from m's <|image|> token on, until a later
    run of image tokens starts; consecutive image tokens all stay visible to the text after them (the
    released processor's rule). Tiles past an image's own count stay 0."""
    T, M = len(tokens), len(n_tiles)
    where = [i for i, t in enumerate(tokens) if t == image_token_id]
    if len(where) != M:
        raise ValueError(f"cross_attention_mask: {len(where)} <|image|> tokens for {M} images")
    out = torch.zeros(T, M, max_num_tiles, dtype=torch.long)
    for m, start in enumerate(where):
        j = m + 1
        while j < M and where[j] == where[j - 1] + 1:  # a run of image tokens: all see the text after it
            j += 1
        out[start : where[j] if j < M else T, m, : n_tiles[m]] = 1
    return out
