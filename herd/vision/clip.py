"""CLIP-style contrastive pre-training of the image encoder on the data stage's image-text pairs [P §7.1].

The paper's ViT-H/14 was first trained contrastively on 2.5B image-text pairs before the adapter
stages; this is that phase at this machine's scale, run as an optional first phase of the recipe.

- Image side: the encoder's per-patch features (final layer + taps), mean-pooled over the tile's
  tokens, then a linear head.
- Text side: a small causal text encoder trained from scratch (a 2-layer herd `Transformer`, width =
  the encoder's, over the language model's tokenizer), pooled at the caption's last token, as CLIP's
  text transformer pools at its end token. Why not the frozen LM's pooled hidden states: one SmolLM2
  forward per caption costs about as much as an adapter step, and the LM's input-embedding bag is
  order-blind ("a red circle ... a blue square" and the colours swapped pool to the same vector),
  which would make the position/colour bindings the scene captions are about unlearnable.
- Loss: symmetric InfoNCE, mean of the image→text and text→image cross-entropies over the batch's
  cosine-similarity matrix times a learned temperature exp(t), t initialized to ln(1/0.07) and clamped
  at ln(100) (CLIP, Radford et al. 2021). Captions that repeat (digits, OCR words) are removed from a
  batch so no positive is scored as a negative.

Evaluation: held-out image → text retrieval recall@1 over all held-out captions; a hit is the retrieved
caption's text equal to the image's own, so chance is the mean share of candidates with that text.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from herd.model.config import ModelConfig
from herd.model.transformer import Transformer
from herd.vision.encoder import ImageEncoder

LOGIT_SCALE_INIT = math.log(1 / 0.07)  # CLIP's initial temperature 0.07
LOGIT_SCALE_MAX = math.log(100.0)  # CLIP clamps the scale at 100


@dataclass(frozen=True)
class ClipConfig:
    steps: int = 0  # 0: no contrastive phase
    lr: float = 1e-3
    batch_size: int = 64
    embed_dim: int = 64
    text_layers: int = 2
    warmup: int = 10
    weight_decay: float = 0.1


class ClipModel(nn.Module):
    """Image encoder (shared with the vision model, trained here) + text encoder + two linear heads."""

    def __init__(self, encoder: ImageEncoder, vocab_size: int, cfg: ClipConfig, seed: int = 0) -> None:
        super().__init__()
        dim = encoder.cfg.dim
        self.encoder = encoder
        text_cfg = ModelConfig(dim=dim, n_layers=cfg.text_layers, n_heads=encoder.cfg.n_heads,
                               n_kv_heads=encoder.cfg.n_heads, vocab_size=vocab_size, ffn_dim=4 * dim,
                               rope_theta=10_000.0, rope_scaling=None, max_seq_len=256)  # fmt: skip
        self.text = Transformer(text_cfg)
        self.text.init_weights(seed=seed)
        self.image_head = nn.Linear(encoder.cfg.output_dim, cfg.embed_dim, bias=False)
        self.text_head = nn.Linear(dim, cfg.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))

    def embed_images(self, tiles: Tensor) -> Tensor:
        """tiles (B, C, H, W), one tile per image → unit vectors (B, embed_dim)."""
        B = tiles.shape[0]
        ones = torch.ones(B, 1, dtype=torch.long, device=tiles.device)
        feats = self.encoder(tiles[:, None, None], ones, ones[:, :, None])  # (B, 1, 1, P, out)
        return F.normalize(self.image_head(feats.mean(dim=3).flatten(1)), dim=-1)

    def embed_texts(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """tokens (B, T) right-padded, lengths (B,) → unit vectors, pooled at each caption's last token."""
        h = self.text(tokens, return_hidden=True)
        last = h[torch.arange(tokens.shape[0], device=tokens.device), lengths - 1]
        return F.normalize(self.text_head(last), dim=-1)


def clip_loss(image: Tensor, text: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE over unit vectors (B, D): row i's positive is column i, both directions."""
    logits = logit_scale.clamp(max=LOGIT_SCALE_MAX).exp() * image @ text.T
    target = torch.arange(image.shape[0], device=image.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def encode_captions(tok: Any, captions: list[str]) -> tuple[Tensor, Tensor]:
    ids = [tok.encode(c)[:255] or [0] for c in captions]
    T = max(len(i) for i in ids)
    return torch.tensor([i + [0] * (T - len(i)) for i in ids]), torch.tensor([len(i) for i in ids])


def distinct_caption_batch(rng: random.Random, rows: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """A random batch with no caption twice (a repeated caption would be its own false negative)."""
    seen: set[str] = set()
    out = []
    for r in rng.sample(rows, min(len(rows), 2 * size)):
        if r["caption"] not in seen:
            seen.add(r["caption"])
            out.append(r)
        if len(out) == size:
            break
    return out


def train_clip(model: ClipModel, tok: Any, images: dict[str, Tensor], rows: list[dict[str, Any]], cfg: ClipConfig,
               seed: int = 0, log_every: int = 25) -> list[float]:  # fmt: skip
    """AdamW, linear warmup then cosine to 0 (CLIP's schedule); the temperature gets no weight decay."""
    from herd.core.logging import get_logger

    log = get_logger(__name__)
    rng = random.Random(f"{seed}-clip")
    decayed = [p for n, p in model.named_parameters() if p.ndim >= 2]
    other = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decayed}, {"params": other, "weight_decay": 0.0}], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)  # fmt: skip
    losses = []
    model.train()
    for step in range(cfg.steps):
        warm = (step + 1) / cfg.warmup if step < cfg.warmup else 1.0
        cos = 0.5 * (1 + math.cos(math.pi * step / max(1, cfg.steps)))
        for g in opt.param_groups:
            g["lr"] = cfg.lr * min(warm, cos)
        part = distinct_caption_batch(rng, rows, cfg.batch_size)
        tokens, lengths = encode_captions(tok, [r["caption"] for r in part])
        img = model.embed_images(torch.stack([images[r["id"]][0] for r in part]))
        loss = clip_loss(img, model.embed_texts(tokens, lengths), model.logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % log_every == 0 or step == cfg.steps - 1:
            log.info("clip step %d/%d loss %.3f (chance %.3f)", step + 1, cfg.steps, losses[-1], math.log(len(part)))
    return losses


@torch.no_grad()
def retrieval(model: ClipModel, tok: Any, images: dict[str, Tensor], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Image → text recall@1 over every held-out caption, with its chance level and a 95% CI."""
    from herd.eval.stats import ci95

    model.eval()
    captions = [r["caption"] for r in rows]
    txt = torch.cat([model.embed_texts(*encode_captions(tok, captions[s : s + 128])) for s in range(0, len(rows), 128)])
    img = torch.cat([
        model.embed_images(torch.stack([images[r["id"]][0] for r in rows[s : s + 128]]))
        for s in range(0, len(rows), 128)
    ])  # fmt: skip
    best = (img @ txt.T).argmax(-1).tolist()
    hits = [int(captions[j] == captions[i]) for i, j in enumerate(best)]
    chance = sum(captions.count(c) for c in captions) / len(captions) ** 2
    recall = sum(hits) / len(hits)
    return {"recall_at_1": recall, "ci95": ci95(recall, len(hits)), "chance": chance, "n": len(hits)}
