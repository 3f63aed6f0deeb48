"""Why does (or doesn't) the adapter learn the scene questions? Three cheap measurements, each seconds to
a few CPU-minutes, run on the bundled data (docs/vision.md, "Diagnosis"):

- `probe`: a linear probe (logistic regression) on pooled encoder features predicts each third's colour
  and shape and the shape count of held-out scenes: does the encoder output carry the answers?
- `magnitudes`: the frozen LM's residual RMS before each cross-attention block against the block's
  branch outputs with the gates at 1: how large is the image's path into the stream at initialization?
- `fit`: can the adapter fit ONE fixed batch of "What colour is the circle?" questions, whose answers only
  the image decides, and how many steps does it take at a given LR?

    python -m herd.vision.diagnose probe|magnitudes|fit [--lr 1e-3] [--gate-lr-mult 10] [--steps 45]
"""

from __future__ import annotations

import argparse
import itertools
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from herd.vision.data import NUMBER_WORDS, load_split
from herd.vision.train import StageSteps, VisionTrainConfig, build_model, load_images, score, train_stage

SLOTS = {"left": 0, "middle": 1, "right": 2}


def scene_labels(caption: str) -> list[str]:
    """Per third (left, middle, right): colour, then shape ("none" where empty), then the shape count."""
    colour, shape = ["none"] * 3, ["none"] * 3
    for m in re.finditer(r"a (\w+) (\w+) on the (\w+)", caption):
        colour[SLOTS[m[3]]], shape[SLOTS[m[3]]] = m[1], m[2]
    return colour + shape + [NUMBER_WORDS[sum(c != "none" for c in colour)]]


@torch.no_grad()
def pooled_features(encoder, images: dict[str, torch.Tensor], rows: list[dict[str, Any]]) -> torch.Tensor:
    """Class token, mean patch and the mean patch of each column third: (N, 5·out)."""
    x = torch.stack([images[r["id"]] for r in rows])[:, None]
    one = torch.ones(len(rows), 1, dtype=torch.long)
    f = encoder(x, one, one[:, :, None])[:, 0, 0]  # (N, P, out)
    side = int((f.shape[1] - 1) ** 0.5)
    grid = f[:, 1:].reshape(len(rows), side, side, -1)
    cuts = [0, side * 3 // 8, side * 5 // 8, side]  # thirds of the 64-px tile: patches 0-2, 3-4, 5-7
    thirds = [grid[:, :, a:b].mean((1, 2)) for a, b in itertools.pairwise(cuts)]
    return torch.cat([f[:, 0], grid.mean((1, 2)), *thirds], -1)


def probe(cfg: VisionTrainConfig) -> dict[str, tuple[float, float]]:
    """Held-out probe accuracy and the majority-class rate per label, on the (untrained) encoder."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    folder = Path(cfg.data.out_dir)
    rows = {s: [r for r in load_split(folder, s) if r["kind"] == "scene"] for s in ("train", "heldout")}
    model, _ = build_model(cfg)
    images = load_images(folder, rows["train"] + rows["heldout"], cfg.data.image_size)
    X = {s: pooled_features(model.encoder, images, r).numpy() for s, r in rows.items()}
    Y = {s: np.array([scene_labels(x["caption"]) for x in r]) for s, r in rows.items()}
    names = ["colour@left", "colour@middle", "colour@right", "shape@left", "shape@middle", "shape@right", "count"]
    out = {}
    for j, name in enumerate(names):
        clf = LogisticRegression(max_iter=2000).fit(X["train"], Y["train"][:, j])
        majority = max(float(np.mean(Y["heldout"][:, j] == v)) for v in set(Y["train"][:, j]))
        out[name] = (float(clf.score(X["heldout"], Y["heldout"][:, j])), majority)
    return out


@torch.no_grad()
def magnitudes(cfg: VisionTrainConfig) -> list[tuple[str, float, float, float]]:
    """(layer, residual RMS of the text rows, attention-branch RMS, feed-forward-branch RMS) at init."""
    from herd.model.layers import AttentionKernel, rope_cos_sin
    from herd.vision.adapter import cross_attention_bias
    from herd.vision.batching import batch
    from herd.vision.train import examples

    folder = Path(cfg.data.out_dir)
    rows = [r for r in load_split(folder, "train") if r["kind"] == "scene"][:16]
    model, tok = build_model(cfg)
    images = load_images(folder, rows, cfg.data.image_size)
    tokens, _, image, cross = batch(model, tok, images, examples(rows, "qa")[:16])
    h = model.embed(tokens)
    cos, sin = rope_cos_sin(model.text.inv_freq, torch.arange(tokens.shape[1]))
    mask, _ = cross_attention_bias(cross, image.shape[1], h.dtype)
    out = []
    for i, layer in model.text.layers.items():
        if i in model.cross_layers:
            b = model.cross_layers[i]
            a = b.attention(b.attention_norm(h), image, mask)
            f = b.feed_forward(b.ffn_norm(h))
            rms = [t.pow(2).mean().sqrt().item() for t in (h[:, 1:], a, f)]  # row 0 (<|image|>) is the LM's sink
            out.append((i, *rms))
        h = layer(h, cos, sin, AttentionKernel())
    return out


def fit_one_batch(cfg: VisionTrainConfig, lr: float, steps: int) -> list[tuple[int, float, float]]:
    """(steps so far, mean loss of the last chunk, accuracy on the batch) every 15 steps."""
    folder = Path(cfg.data.out_dir)
    rows = [r for r in load_split(folder, "train") if r["kind"] == "scene"]
    picked = [(r["id"], q) for r in rows for q in r["qa"] if q["question"] == "What colour is the circle?"][:16]
    items = [(i, f"Question: {q['question']}\nAnswer:", " " + q["answer"]) for i, q in picked]
    questions = [(i, "scene", q["question"], q["answer"]) for i, q in picked]
    model, tok = build_model(replace(cfg, batch_size=len(items)))
    images = load_images(folder, rows, cfg.data.image_size)
    out, done = [], 0
    while done < steps:
        losses = train_stage(model, tok, images, items, StageSteps(15, lr), replace(cfg, batch_size=len(items)), "fit")
        done += 15
        out.append((done, sum(losses) / len(losses), sum(score(model, tok, images, questions)) / len(questions)))
    return out


def main(argv: list[str] | None = None) -> None:
    from herd.core.config import load_config

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["probe", "magnitudes", "fit"])
    p.add_argument("--config", default="configs/vision/tiny.toml")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--gate-lr-mult", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=45)
    a = p.parse_args(argv)
    cfg = replace(load_config(VisionTrainConfig, a.config), gate_lr_mult=a.gate_lr_mult)
    if a.what == "probe":
        for name, (acc, majority) in probe(cfg).items():
            print(f"{name:<14} held-out probe accuracy {acc:.2f} (majority class {majority:.2f})")
    elif a.what == "magnitudes":
        for i, res, att, ffn in magnitudes(cfg):
            print(f"before layer {i:>2}: residual RMS {res:8.3f}  attention branch {att:.4f}  feed-forward {ffn:.4f}")
    else:
        for done, loss, acc in fit_one_batch(cfg, a.lr, a.steps):
            print(f"step {done:>3}: loss {loss:.3f}  batch accuracy {acc:.2f}")


if __name__ == "__main__":
    main()
