"""DPO for the vision adapter with an EMA reference model [P §7.5.4].

The paper's vision DPO differs from the text DPO in one way kept here: the reference model is not
frozen but follows the policy as an exponential moving average, updated every `ema_every` steps,
ref ← decay·ref + (1 − decay)·policy (the paper gives neither the decay nor k; they are config fields).
Only the adapter (encoder, projection, learnable tokens, cross-attention blocks) trains, so the
reference is a second adapter (its own encoder, projection and cross-attention blocks) around the same
frozen text module, so it costs the adapter's memory, not the language model's.

The loss is herd's text DPO loss (herd.posttrain.losses.dpo_loss: β = 0.1 and an NLL term on the chosen
response, ×0.2 [P §4.1.4]) on summed answer log-probabilities. Preference pairs come from the data stage
(preferences.jsonl: a rendered-scene question, its true answer chosen, another answer rejected).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from herd.core.logging import get_logger
from herd.posttrain.losses import dpo_loss, sequence_logps
from herd.vision.adapter import VisionLanguageModel
from herd.vision.batching import batch

log = get_logger(__name__)


@dataclass(frozen=True)
class VisionDPOConfig:
    steps: int = 0  # 0: no DPO
    lr: float = 1e-4
    batch_size: int = 8  # preference pairs per step (2× sequences through policy and reference)
    beta: float = 0.1  # [P §4.1.4]
    nll_coef: float = 0.2  # [P §4.1.4]
    ema_decay: float = 0.9  # herd's choice: the paper does not give it
    ema_every: int = 1  # update the reference every k steps [P §7.5.4 "every k steps"]
    warmup: int = 2


def reference_model(policy: VisionLanguageModel) -> VisionLanguageModel:
    """A frozen copy of the policy's adapter sharing its (frozen) text model: the EMA reference."""
    ref = VisionLanguageModel(policy.cfg, text=policy.text)
    adapter = {k: v for k, v in policy.state_dict().items() if not k.startswith("text.")}
    ref.load_state_dict(adapter, strict=False)
    for name, p in ref.named_parameters():
        if not name.startswith("text."):
            p.requires_grad_(False)
    return ref.eval()


@torch.no_grad()
def ema_update(ref: VisionLanguageModel, policy: VisionLanguageModel, decay: float) -> None:
    """ref ← decay·ref + (1 − decay)·policy for every adapter tensor, in place [P §7.5.4]."""
    theirs = dict(policy.named_parameters())
    for name, r in ref.named_parameters():
        if not name.startswith("text."):
            r.mul_(decay).add_(theirs[name].detach(), alpha=1 - decay)


def pair_items(prefs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Chosen rows then rejected rows, as (image id, prompt, target) for herd.vision.batching.batch."""
    prompts = [(r["id"], f"Question: {r['question']}\nAnswer:") for r in prefs]
    chosen = [(i, p, " " + r["chosen"]) for (i, p), r in zip(prompts, prefs, strict=True)]
    return chosen + [(i, p, " " + r["rejected"]) for (i, p), r in zip(prompts, prefs, strict=True)]


def pair_logps(model: VisionLanguageModel, tok: Any, images: dict[str, Tensor], prefs: list[dict[str, Any]]):
    """Summed answer log-probs (chosen (B,), rejected (B,)) and the chosen answers' token counts."""

    tokens, target, image, cross = batch(model, tok, images, pair_items(prefs))
    y = target[:, 1:]
    logps = sequence_logps(model(tokens, image, cross)[:, :-1], y, y != -100)
    n = len(prefs)
    return logps[:n], logps[n:], (y[:n] != -100).sum(-1)


def dpo_step_loss(policy, ref, tok, images, prefs, cfg: VisionDPOConfig) -> tuple[Tensor, Tensor, Tensor]:
    """herd's DPO loss (+ NLL on chosen) of one batch of pairs; returns (loss, chosen reward, rejected reward)."""
    with torch.no_grad():
        ref_c, ref_r, _ = pair_logps(ref, tok, images, prefs)
    pi_c, pi_r, n_tokens = pair_logps(policy, tok, images, prefs)
    return dpo_loss(pi_c, pi_r, ref_c, ref_r, beta=cfg.beta, nll_coef=cfg.nll_coef, chosen_tokens=n_tokens)


def train_vision_dpo(policy: VisionLanguageModel, tok: Any, images: dict[str, Tensor], prefs: list[dict[str, Any]],
                     cfg: VisionDPOConfig, seed: int = 0) -> dict[str, list[float]]:  # fmt: skip
    """AdamW over the adapter, warmup then cosine; the reference starts as the policy and follows it by EMA."""
    rng = random.Random(f"{seed}-dpo")
    ref = reference_model(policy)
    params = policy.adapter_parameters()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    hist: dict[str, list[float]] = {"loss": [], "margin": [], "accuracy": []}
    policy.train()
    for step in range(cfg.steps):
        warm = (step + 1) / cfg.warmup if step < cfg.warmup else 1.0
        for g in opt.param_groups:
            g["lr"] = cfg.lr * min(warm, 0.5 * (1 + math.cos(math.pi * step / max(1, cfg.steps))))
        loss, r_c, r_r = dpo_step_loss(policy, ref, tok, images, rng.sample(prefs, cfg.batch_size), cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (step + 1) % cfg.ema_every == 0:
            ema_update(ref, policy, cfg.ema_decay)
        hist["loss"].append(loss.item())
        hist["margin"].append((r_c - r_r).mean().item())
        hist["accuracy"].append((r_c > r_r).float().mean().item())
        log.info("dpo step %d/%d loss %.4f margin %.4f", step + 1, cfg.steps, hist["loss"][-1], hist["margin"][-1])
    return hist
