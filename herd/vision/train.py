"""The bundled vision recipe: adapter pre-training → annealing → SFT on a frozen language model [P §7.4, §7.5].

The frozen LM is the bundled SmolLM2-135M (herd.model.load_model("smollm2")); the image encoder (tiny
ViT, trained from scratch: the paper does not freeze its encoder either), the projection and one gated
cross-attention block before every 4th self-attention layer train. Stages, each a fresh AdamW and
warmup + cosine schedule over the same trainable parameters:

- pre-training on captions (next-token loss on the caption) [P §7.4];
- annealing: a fresh warmup to a lower peak on the harder mix (all sources, captions and QA) [P §7.4];
- SFT on question → answer pairs [P §7.5].

Evaluation is closed-set VQA on held-out images: the answer is the candidate (every answer of that
question type) with the highest next-token log-probability. The blind baselines are the same frozen LM
with no image (the text-only model; with gates at 0 it is exactly the vision model before training) and
the majority training answer per question type (what any model that cannot see does best on average).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from herd.core.logging import get_logger
from herd.vision.adapter import VisionLanguageModel
from herd.vision.batching import batch
from herd.vision.clip import ClipConfig
from herd.vision.config import ENCODER_PRESETS, VisionConfig, every_fourth
from herd.vision.data import VisionDataConfig, answer_set, load_split, run_data_stage
from herd.vision.dpo import VisionDPOConfig
from herd.vision.scoring import heldout_questions, majority_baseline, paired_gain, summarize
from herd.vision.tiling import tile_image
from herd.vision.video_qa import VideoQAConfig

log = get_logger(__name__)


@dataclass(frozen=True)
class StageSteps:
    steps: int
    lr: float
    warmup: int = 5


@dataclass(frozen=True)
class VisionTrainConfig:
    data: VisionDataConfig = field(default_factory=VisionDataConfig)
    out_dir: str = "runs/vision/recipe"
    lm: str = "smollm2"  # a bundled name, herd/HF folder or GGUF: the frozen language model
    encoder: str = "tiny"
    seed: int = 0
    batch_size: int = 16
    # Peak LRs: the paper's 1e-3 for pre-training [P §7.4 "10×10⁻⁴"], annealing warms up afresh to less.
    pretrain: StageSteps = field(default_factory=lambda: StageSteps(10, 1e-3))
    anneal: StageSteps = field(default_factory=lambda: StageSteps(10, 3e-4))
    sft: StageSteps = field(default_factory=lambda: StageSteps(40, 5e-4))
    weight_decay: float = 0.01  # [P §7.4]
    # Gates start at 0 and Adam moves a scalar about lr per step: over ~100 CPU steps they would stay
    # near tanh(0.1). A larger LR for the gate scalars alone lets them open within the budget.
    gate_lr_mult: float = 10.0
    eval_limit: int = 400  # held-out questions scored per model
    clip: ClipConfig = field(default_factory=ClipConfig)  # optional first phase: contrastive encoder training
    dpo: VisionDPOConfig = field(default_factory=VisionDPOConfig)  # optional last phase: DPO, EMA reference
    video: VideoQAConfig = field(default_factory=VideoQAConfig)  # optional: the video adapter on the result


def build_model(cfg: VisionTrainConfig) -> tuple[VisionLanguageModel, Any]:
    from dataclasses import replace

    from herd.model import load_model
    from herd.tokenizer import load_tokenizer

    text = load_model(cfg.lm)
    encoder = replace(ENCODER_PRESETS[cfg.encoder], image_size=cfg.data.image_size, max_num_tiles=1)
    vcfg = VisionConfig(encoder=encoder, text=text.cfg, cross_layers=every_fourth(text.cfg.n_layers))
    model = VisionLanguageModel(vcfg, text=text)
    model.init_adapter(seed=cfg.seed)
    model.freeze_text()
    return model, load_tokenizer(cfg.lm)


# ---------------------------------------------------------------------------------------------------
# Examples and batches


def load_images(folder: Path, rows: list[dict[str, Any]], size: int) -> dict[str, Tensor]:
    from PIL import Image

    return {r["id"]: tile_image(Image.open(folder / r["image"]), tile=size, max_num_tiles=1).tiles for r in rows}


def examples(rows: list[dict[str, Any]], kind: str) -> list[tuple[str, str, str]]:
    """(image id, prompt, target) triples; the <|image|> token is added when batching."""
    out = []
    for r in rows:
        if kind in ("caption", "mix"):
            out.append((r["id"], "Caption:", " " + r["caption"]))
        if kind in ("qa", "mix"):
            out += [(r["id"], f"Question: {q['question']}\nAnswer:", " " + q["answer"]) for q in r["qa"]]
    return out


def loss_on_targets(model: VisionLanguageModel, tokens: Tensor, target: Tensor, image: Tensor, cross: Tensor) -> Tensor:
    """Next-token cross-entropy on target tokens only, projecting just those positions onto the vocabulary."""
    h = model(tokens, image, cross, return_hidden=True)[:, :-1]  # (B, T-1, dim)
    y = target[:, 1:]
    keep = y != -100
    logits = F.linear(h[keep], model.text.output_weight())
    return F.cross_entropy(logits, y[keep])


def train_stage(model, tok, images, items, stage: StageSteps, cfg: VisionTrainConfig, name: str) -> list[float]:
    """AdamW with linear warmup and cosine decay to 10% [P §7.4: cosine schedule]."""
    rng = random.Random(f"{cfg.seed}-{name}")
    params = model.adapter_parameters()
    gates = [p for n, p in model.named_parameters() if n.startswith("cross_layers.") and "gate" in n]
    rest = [p for p in params if all(p is not g for g in gates)]
    opt = torch.optim.AdamW(
        [{"params": rest, "mult": 1.0}, {"params": gates, "mult": cfg.gate_lr_mult, "weight_decay": 0.0}],
        lr=stage.lr,
        weight_decay=cfg.weight_decay,
    )
    losses = []
    model.train()
    for step in range(stage.steps):
        warm = (step + 1) / stage.warmup if step < stage.warmup else 1.0
        cos = 0.1 + 0.45 * (1 + math.cos(math.pi * step / max(1, stage.steps)))
        for g in opt.param_groups:
            g["lr"] = stage.lr * g["mult"] * min(warm, cos)
        loss = loss_on_targets(model, *batch(model, tok, images, rng.sample(items, cfg.batch_size)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 10 == 0 or step == stage.steps - 1:
            log.info("%s step %d/%d loss %.3f", name, step + 1, stage.steps, losses[-1])
    return losses


# ---------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def score_rows(model, tok, images, questions, see: bool = True, chunk: int = 32) -> list[str]:
    """The predicted answer per question: the candidate with the highest first-token log-probability."""
    model.eval()
    out = []
    for s in range(0, len(questions), chunk):
        part = questions[s : s + chunk]
        items = [(i, f"Question: {q}\nAnswer:", "") for i, _, q, _ in part]
        tokens, _, image, cross = batch(model, tok, images, items)
        lengths = [1 + len(tok.encode(p)) for _, p, _ in items]
        h = model(tokens, image if see else None, cross, return_hidden=True)
        last = h[torch.arange(len(part)), torch.tensor(lengths) - 1]
        logp = F.linear(last, model.text.output_weight()).log_softmax(-1)
        for row, (_, _, q, _) in zip(logp, part, strict=True):
            cands = answer_set(q)
            firsts = [tok.encode(" " + c)[0] for c in cands]
            out.append(cands[int(torch.stack([row[f] for f in firsts]).argmax())])
    return out


def score(model, tok, images, questions, see: bool = True) -> list[int]:
    """1/0 per question: is the prediction the true answer?"""
    preds = score_rows(model, tok, images, questions, see)
    return [int(p == a) for p, (_, _, _, a) in zip(preds, questions, strict=True)]


def blind_score(model, tok, images, questions) -> list[int]:
    """The text-only model's hits. Without the image the answer depends on the question text alone, so
    each distinct question is scored once (a few dozen forward rows instead of hundreds)."""
    first = {}
    for item in questions:
        first.setdefault(item[2], item)
    logits_for = dict(zip(first, score_rows(model, tok, images, list(first.values()), see=False), strict=True))
    return [int(logits_for[q] == a) for _, _, q, a in questions]


# ---------------------------------------------------------------------------------------------------
# The recipe


def run_recipe(cfg: VisionTrainConfig) -> dict[str, Any]:
    """clip (optional) → pretrain → anneal → SFT → DPO (optional) → video (optional), with the evals of each."""
    torch.manual_seed(cfg.seed)
    start, cpu0 = time.perf_counter(), time.process_time()
    data = run_data_stage(cfg.data)
    folder = Path(cfg.data.out_dir)
    train_rows, held_rows = load_split(folder, "train"), load_split(folder, "heldout")
    model, tok = build_model(cfg)
    images = load_images(folder, train_rows + held_rows, cfg.data.image_size)
    questions = heldout_questions(held_rows, cfg.eval_limit, cfg.seed)
    report: dict[str, Any] = {"data": data.counts, "questions": len(questions), "losses": {}}
    blind = blind_score(model, tok, images, questions)
    # Gates at 0: the image cannot change a single answer (checked on a slice; the full pass costs minutes).
    if score(model, tok, images, questions[:32], see=True) != blind[:32]:
        raise RuntimeError("zero-gate vision model disagrees with the text-only model")
    majority = majority_baseline(train_rows, questions)
    if cfg.clip.steps:
        report["clip"] = clip_phase(model, tok, images, train_rows, held_rows, cfg)
    schedule = (("pretrain", "caption", cfg.pretrain), ("anneal", "mix", cfg.anneal), ("sft", "qa", cfg.sft))
    for name, kind, stage in schedule:
        report["losses"][name] = train_stage(model, tok, images, examples(train_rows, kind), stage, cfg, name)
    trained = score(model, tok, images, questions, see=True)
    report["eval"] = {
        "text_only": summarize(blind, questions),
        "majority_prior": summarize(majority, questions),
        "vision": summarize(trained, questions),
    }
    report["hits"] = {"text_only": blind, "vision": trained}  # per question, for paired comparisons of runs
    report["gain_vs_text_only"] = paired_gain(trained, blind)
    report["gain_vs_majority_prior"] = paired_gain(trained, majority)
    if cfg.dpo.steps:
        report.update(dpo_phase(model, tok, images, load_split(folder, "preferences"), questions, trained, blind, cfg))
    report["gates"] = {
        k: [b.gate_attn.detach().tanh().item(), b.gate_ffwd.detach().tanh().item()]
        for k, b in model.cross_layers.items()
    }
    out = Path(cfg.out_dir)
    from herd.vision.chat import save_vision_model

    save_vision_model(model, cfg, out / "model")
    if cfg.video.steps:
        report["video"] = video_phase(model, tok, folder, cfg)
    report["wall_s"] = time.perf_counter() - start
    report["cpu_s"] = time.process_time() - cpu0
    report["threads"] = torch.get_num_threads()
    report["report"] = {"tables": report_tables(report)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def clip_phase(model, tok, images, train_rows, held_rows, cfg: VisionTrainConfig) -> dict[str, Any]:
    """Contrastive pre-training of model.encoder in place; held-out retrieval before and after."""
    from herd.vision.clip import ClipModel, retrieval, train_clip

    clip = ClipModel(model.encoder, tok.vocab_size, cfg.clip, seed=cfg.seed)
    before = retrieval(clip, tok, images, held_rows)
    losses = train_clip(clip, tok, images, train_rows, cfg.clip, seed=cfg.seed)
    after = retrieval(clip, tok, images, held_rows)
    log.info("clip: held-out recall@1 %.3f -> %.3f (chance %.3f)", before["recall_at_1"], after["recall_at_1"],
             after["chance"])  # fmt: skip
    return {"losses": losses, "retrieval_before": before, "retrieval": after,
            "temperature": 1 / clip.logit_scale.detach().exp().item()}  # fmt: skip


def dpo_phase(model, tok, images, prefs, questions, trained, blind, cfg: VisionTrainConfig) -> dict[str, Any]:
    """DPO with an EMA reference after SFT; held-out VQA after it, paired against the SFT model."""
    from herd.vision.dpo import train_vision_dpo

    hist = train_vision_dpo(model, tok, images, prefs, cfg.dpo, seed=cfg.seed)
    after = score(model, tok, images, questions, see=True)
    return {
        "dpo": hist,
        "hits_dpo": after,
        "eval_dpo": summarize(after, questions),
        "gain_dpo_vs_sft": paired_gain(after, trained),
        "gain_dpo_vs_text_only": paired_gain(after, blind),
    }


def video_phase(model: VisionLanguageModel, tok, folder: Path, cfg: VisionTrainConfig) -> dict[str, Any]:
    """The video aggregator + video cross-attention on the frozen image model; held-out video QA."""
    from herd.vision.video_qa import build_video_model, evaluate_video, load_clips, train_video

    train_rows, held_rows = load_split(folder, "video_train"), load_split(folder, "video_heldout")
    clips = load_clips(folder, train_rows + held_rows, model.cfg.encoder.image_size)
    n_frames = int(train_rows[0]["n_frames"])
    video = build_video_model(model, n_frames, cfg.video, seed=cfg.seed)
    losses = train_video(video, tok, clips, train_rows, cfg.video, seed=cfg.seed)
    return {
        "losses": losses,
        **evaluate_video(video, tok, clips, train_rows, held_rows, cfg.video.eval_limit, cfg.seed),
    }


def report_tables(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The tables the recipe report shows for the vision stage (herd.recipe.report reads counts["report"])."""

    def pm(r: dict[str, Any]) -> str:
        return f"{100 * r['acc']:.1f} ± {100 * r['ci95']:.1f}"

    ev = dict(report["eval"])
    if "eval_dpo" in report:
        ev["vision_dpo"] = report["eval_dpo"]
    kinds = list(ev["vision"])
    tables = [{"head": ["model", *kinds], "rows": [[k, *(pm(v[x]) for x in kinds)] for k, v in ev.items()],
               "caption": f"held-out VQA accuracy % ± 95% CI, n={report['questions']} [P §7.6]"}]  # fmt: skip
    gains = [[k, f"{100 * report[k]['gain']:+.1f} ± {100 * report[k]['ci95']:.1f}", report[k]["n"]]
             for k in ("gain_vs_text_only", "gain_vs_majority_prior", "gain_dpo_vs_sft") if k in report]  # fmt: skip
    tables.append({"head": ["paired gain", "points ± 95% CI", "n"], "rows": gains, "caption": "paired per question"})
    if "clip" in report:
        c = report["clip"]
        rows = [[k, f"{100 * c[k]['recall_at_1']:.1f} ± {100 * c[k]['ci95']:.1f}", f"{100 * c[k]['chance']:.1f}",
                 c[k]["n"]] for k in ("retrieval_before", "retrieval")]  # fmt: skip
        tables.append({"head": ["CLIP encoder", "image→text recall@1 %", "chance %", "n"], "rows": rows,
                       "caption": "held-out retrieval before and after contrastive pre-training"})  # fmt: skip
    if "video" in report:
        v, g = report["video"], report["video"]["gain_vs_text_only"]
        vk = list(v["eval"]["video"])
        rows = [[k, *(pm(r[x]) for x in vk)] for k, r in v["eval"].items()]
        caption = f"held-out video QA % ± 95% CI; gain vs text-only {100 * g['gain']:+.1f} ± {100 * g['ci95']:.1f}"
        tables.append({"head": ["video model", *vk], "rows": rows, "caption": caption})
    return tables


def compare_runs(a: dict[str, Any], b: dict[str, Any], key: str = "vision") -> dict[str, float]:
    """Paired held-out VQA gain of run a over run b (same questions: same data, seed and eval_limit)."""
    if a["questions"] != b["questions"]:
        raise ValueError(f"compare: runs scored {a['questions']} and {b['questions']} questions")
    return paired_gain(a["hits"][key], b["hits"][key])


def seeds_summary(reports: list[dict[str, Any]], key: str = "vision") -> dict[str, Any]:
    """Held-out VQA gain over the text-only model per seed and pooled: the mean over seeds with a 95%
    interval from every (seed, question) difference (paired within a seed), and the seeds' spread."""
    per_seed = [paired_gain(r["hits"][key], r["hits"]["text_only"]) for r in reports]
    pooled = paired_gain(
        [h for r in reports for h in r["hits"][key]], [h for r in reports for h in r["hits"]["text_only"]]
    )
    gains = [g["gain"] for g in per_seed]
    return {"per_seed": per_seed, "mean": pooled, "min": min(gains), "max": max(gains)}


def format_report(report: dict[str, Any]) -> str:
    """The before/after table: accuracy ± 95% CI per source for each model, then the paired gains."""
    ev = report["eval"]
    kinds = list(ev["vision"])
    lines = [f"{'model':<16}" + "".join(f"{k:>18}" for k in kinds)]
    for name, res in ev.items():
        cells = "".join(f"{100 * res[k]['acc']:>10.1f} ± {100 * res[k]['ci95']:4.1f}" for k in kinds)
        lines.append(f"{name:<16}{cells}")
    for key in ("gain_vs_text_only", "gain_vs_majority_prior", "gain_dpo_vs_sft", "gain_dpo_vs_text_only"):
        if key in report:
            g = report[key]
            lines.append(f"{key}: {100 * g['gain']:+.1f} ± {100 * g['ci95']:.1f} points (paired, n={g['n']})")
    for t in report["report"]["tables"][2:]:
        lines.append(" | ".join(t["head"]))
        lines += [" | ".join(map(str, r)) for r in t["rows"]]
        lines.append(t["caption"])
    lines.append(f"wall {report['wall_s']:.0f} s, process CPU {report['cpu_s']:.0f} s, {report['threads']} threads")
    return "\n".join(lines)
