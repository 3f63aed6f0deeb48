"""Video QA: train the video aggregator and video cross-attention on the data stage's clips [P §7.2, §7.4].

As in the paper's video pre-training, everything of the image model stays frozen (encoder, projection,
image cross-attention, the text model) and only the video-specific parts train: the perceiver
resampler and the gated video cross-attention blocks. Every clip's frames are merged into one set of
latents (`aggregate` = frames per clip): the resampler's per-frame time embedding is the only place
frame order exists, and the questions ("which colour appeared first", "in how many frames") need it
across the whole clip. Evaluation is closed-set, as for images, against the blind (text-only) model
and the majority training answer.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from herd.core.logging import get_logger
from herd.vision.adapter import VisionLanguageModel
from herd.vision.data import answer_set
from herd.vision.scoring import heldout_questions, majority_baseline, paired_gain, summarize
from herd.vision.tiling import tile_image
from herd.vision.video import VideoConfig, VideoLanguageModel

log = get_logger(__name__)


@dataclass(frozen=True)
class VideoQAConfig:
    steps: int = 0  # 0: no video phase
    lr: float = 1e-3
    batch_size: int = 16
    n_latents: int = 16  # herd's choice (the paper does not give it)
    resampler_layers: int = 2
    gate_lr_mult: float = 10.0  # as for the image gates (herd.vision.train)
    warmup: int = 5
    eval_limit: int = 300


def load_clips(folder: Path, rows: list[dict[str, Any]], tile: int) -> dict[str, Tensor]:
    """id → frames (F, C, tile, tile): each strip cut into its frames, each frame tiled like an image."""
    from PIL import Image

    out = {}
    for r in rows:
        strip = Image.open(folder / r["image"]).convert("RGB")
        n = int(r["n_frames"])
        w = strip.width // n
        if w * n != strip.width:
            raise ValueError(f"{folder / r['image']}: width {strip.width} is not {n} frames of equal width")
        frames = [strip.crop((f * w, 0, (f + 1) * w, strip.height)) for f in range(n)]
        out[r["id"]] = torch.stack([tile_image(fr, tile=tile, max_num_tiles=1).tiles[0] for fr in frames])
    return out


def build_video_model(
    base: VisionLanguageModel, n_frames: int, cfg: VideoQAConfig, seed: int = 0
) -> VideoLanguageModel:
    """The image model, frozen, plus a fresh aggregator and video blocks (gates at 0: the image model exactly)."""
    torch.manual_seed(seed)
    video = VideoConfig(aggregate=n_frames, max_frames=n_frames, n_latents=cfg.n_latents, n_layers=cfg.resampler_layers)
    model = VideoLanguageModel(base, video)
    base.requires_grad_(False)
    with torch.no_grad():
        for name, p in model.video_layers.named_parameters():
            if "gate" in name:
                p.zero_()
            elif "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)
    return model


def video_batch(model: VideoLanguageModel, tok: Any, clips: dict[str, Tensor], items: list[tuple[str, str, str]]):
    """tokens (B, T) with <|image|> first, labels (-100 outside the target), encoded video (B, L, dim)."""
    image_id = model.base.cfg.image_token_id
    seqs, labels = [], []
    for _, prompt, target in items:
        p, t = [image_id, *tok.encode(prompt)], tok.encode(target) if target else []
        seqs.append(p + t)
        labels.append([-100] * len(p) + t)
    T = max(len(s) for s in seqs)
    tokens = torch.tensor([s + [0] * (T - len(s)) for s in seqs])
    target = torch.tensor([lab + [-100] * (T - len(lab)) for lab in labels])
    return tokens, target, model.encode_video(torch.stack([clips[i] for i, _, _ in items]))


def qa_items(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(r["id"], f"Question: {q['question']}\nAnswer:", " " + q["answer"]) for r in rows for q in r["qa"]]


def train_video(model: VideoLanguageModel, tok: Any, clips: dict[str, Tensor], rows: list[dict[str, Any]],
                cfg: VideoQAConfig, seed: int = 0) -> list[float]:  # fmt: skip
    """AdamW on the aggregator and video blocks, warmup + cosine to 10%; next-token loss on the answer."""
    rng = random.Random(f"{seed}-video")
    items = qa_items(rows)
    params = [p for p in model.parameters() if p.requires_grad]
    gates = [p for n, p in model.video_layers.named_parameters() if "gate" in n]
    rest = [p for p in params if all(p is not g for g in gates)]
    opt = torch.optim.AdamW([{"params": rest, "mult": 1.0}, {"params": gates, "mult": cfg.gate_lr_mult,
                             "weight_decay": 0.0}], lr=cfg.lr, weight_decay=0.01)  # fmt: skip
    losses = []
    model.train()
    for step in range(cfg.steps):
        warm = (step + 1) / cfg.warmup if step < cfg.warmup else 1.0
        cos = 0.1 + 0.45 * (1 + math.cos(math.pi * step / max(1, cfg.steps)))
        for g in opt.param_groups:
            g["lr"] = cfg.lr * g["mult"] * min(warm, cos)
        tokens, target, video = video_batch(model, tok, clips, rng.sample(items, min(cfg.batch_size, len(items))))
        logits = model(tokens, video=video)[:, :-1]
        loss = F.cross_entropy(logits.flatten(0, 1), target[:, 1:].flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 10 == 0 or step == cfg.steps - 1:
            log.info("video step %d/%d loss %.3f", step + 1, cfg.steps, losses[-1])
    return losses


@torch.no_grad()
def predict(model: VideoLanguageModel, tok: Any, clips: dict[str, Tensor], questions, see: bool = True,
            chunk: int = 32) -> list[str]:  # fmt: skip
    """Closed-set answers: the candidate whose first token has the highest log-probability."""
    model.eval()
    out = []
    for s in range(0, len(questions), chunk):
        part = questions[s : s + chunk]
        items = [(i, f"Question: {q}\nAnswer:", "") for i, _, q, _ in part]
        tokens, _, video = video_batch(model, tok, clips, items)
        last = torch.tensor([1 + len(tok.encode(p)) for _, p, _ in items]) - 1
        logp = model(tokens, video=video if see else None)[torch.arange(len(part)), last].log_softmax(-1)
        for row, (_, _, q, _) in zip(logp, part, strict=True):
            cands = answer_set(q)
            firsts = [tok.encode(" " + c)[0] for c in cands]
            out.append(cands[int(torch.stack([row[f] for f in firsts]).argmax())])
    return out


def evaluate_video(model: VideoLanguageModel, tok: Any, clips: dict[str, Tensor], train_rows, held_rows,
                   limit: int, seed: int) -> dict[str, Any]:  # fmt: skip
    """Held-out video QA: the video model vs the blind text-only model and the majority training answer."""

    questions = heldout_questions(held_rows, limit, seed)
    truth = [a for _, _, _, a in questions]
    seen = [int(p == a) for p, a in zip(predict(model, tok, clips, questions), truth, strict=True)]
    blind = [int(p == a) for p, a in zip(predict(model, tok, clips, questions, see=False), truth, strict=True)]
    majority = majority_baseline(train_rows, questions)
    by_type = [(i, _qtype(q), q, a) for i, _, q, a in questions]  # slice the table by question type
    return {
        "eval": {
            "text_only": summarize(blind, by_type),
            "majority_prior": summarize(majority, by_type),
            "video": summarize(seen, by_type),
        },
        "gain_vs_text_only": paired_gain(seen, blind),
        "gain_vs_majority_prior": paired_gain(seen, majority),
        "questions": len(questions),
    }


def _qtype(question: str) -> str:
    for prefix, name in (("Which way", "direction"), ("Which colour", "first_colour"), ("In how many", "frame_count")):
        if question.startswith(prefix):
            return name
    return "other"
