"""A Llama Guard 3-style classifier fine-tuned from a herd-loadable LM [P §5.4.7].

    herd safety train-guard configs/safety/guard_lm.toml

Llama Guard 3 is Llama 3.1 8B fine-tuned to read a conversation in its prompt format and answer `safe` or
`unsafe` plus the violated codes, for the user's input or the model's output, tool calls included
[P §5.4.7; PL]. Here the same format and targets train a small herd model with herd's SFT encoding
(herd.posttrain.sft: the loss falls on the answer tokens only):

- inputs: every bundled prompt, labelled `safe` (borderline, helpful) or `unsafe\\nS<n>` (adversarial);
- outputs: each prompt followed by an agent reply — a refusal (`safe`), or compliance (`unsafe\\nS<n>`
  after an adversarial request, `safe` after a safe one). Compliance replies share their wording with
  the helpful replies, so only the request separates them, as in the real task. For S14 (code
  interpreter abuse) the compliance is a code_interpreter tool call, quoted as Llama 3.1 writes it.

Held-out topics and languages (herd.safety.trained.split) are never trained on. CPU budget: the guard
prompt is about 250 tokens (the category list), so the base model can be cut to its first `keep_layers`
blocks (Meta's Llama Guard 3-1B was likewise pruned from a larger model, per its model card), embeddings
stay frozen, and logits are computed only where the loss is (the answer tokens), not over the prompt.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from herd.core.logging import get_logger
from herd.posttrain.sft import Batch, SFTConfig, encode_dialogs, make_batches
from herd.safety.capability import refusal
from herd.safety.llama_guard import format_guard_output, guard_task
from herd.safety.metrics import majority_baseline, per_class_prf
from herd.safety.trained import SAFE, guard_label

log = get_logger(__name__)

# Replies that go along with the request; identical for safe and unsafe requests (no harmful content).
COMPLY = {
    "en": ["Sure! Here is a detailed, step-by-step answer:\n1.", "Of course. Here's exactly how to do it:\n1.",
           "Happy to help with that. First,"],
    "de": ["Klar! Hier ist eine Schritt-für-Schritt-Anleitung:\n1."],
    "fr": ["Bien sûr ! Voici les étapes détaillées :\n1."],
    "es": ["¡Claro! Estos son los pasos detallados:\n1."],
}  # fmt: skip
# S14 compliance: the tool call the request asks for, one per topic of herd.safety.prompts.ADVERSARIAL["S14"].
S14_CODE = [
    "with open('/tmp/fill', 'wb') as f:\n    while True:\n        f.write(b'0' * 2**20)",
    "import os\nos.system('nsenter --target 1 --mount --uts --ipc --net --pid -- /bin/sh')",
    "import os\nos.system('sudo -n su -c id')",
]


def _comply(row: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
    if row["set"] == "adversarial" and row["category"] == "S14":
        code = S14_CODE[int(row["group"].rsplit("-t", 1)[1])]
        return {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"name": "code_interpreter", "arguments": {"code": code}}],
        }
    return {"role": "assistant", "content": rng.choice(COMPLY.get(row.get("language", "en"), COMPLY["en"]))}


def guard_examples(rows: Sequence[Mapping[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """{"id", "side", "label", "messages", "answer"} per conversation: the input, a refused and a complied output."""
    rng = random.Random(seed)
    out = []
    for row in rows:
        label = guard_label(row)
        unsafe = [label] if label != SAFE else []
        base = {"id": row["id"], "category": label}
        out.append({**base, "side": "input", "label": label, "messages": row["messages"],
                    "answer": format_guard_output(unsafe)})  # fmt: skip
        if row["set"] == "adversarial":
            refused = {"role": "assistant", "content": refusal(label, row.get("language", "en"))}
            out.append({**base, "side": "output", "label": SAFE, "messages": [*row["messages"], refused],
                        "answer": "safe"})  # fmt: skip
        out.append({**base, "side": "output", "label": label, "messages": [*row["messages"], _comply(row, rng)],
                    "answer": format_guard_output(unsafe)})  # fmt: skip
    return out


def guard_dialog(example: Mapping[str, Any], categories: Sequence[str] | None = None) -> list[dict[str, str]]:
    """The SFT dialog: the guard task as the user turn, the answer as the assistant turn."""
    return [{"role": "user", "content": guard_task(example["messages"], categories)},
            {"role": "assistant", "content": example["answer"]}]  # fmt: skip


def prune(model: Any, keep_layers: int) -> Any:
    """The first `keep_layers` blocks of `model` with its embeddings, final norm and head."""
    from herd.model import build_model

    if not keep_layers or keep_layers >= model.cfg.n_layers:
        return model
    small = build_model(dataclasses.replace(model.cfg, n_layers=keep_layers))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("layers.") or
             int(k.split(".")[1]) < keep_layers}  # fmt: skip
    small.load_state_dict(state)
    return small


def answer_loss(model: Any, batch: Batch, upweight: Sequence[int] = (), weight: float = 1.0) -> torch.Tensor:
    """Cross-entropy on the answer tokens, with logits computed only there (the prompt is ~250 tokens).
    Target tokens in `upweight` (the category digits) count `weight` times; the mean is over the weights."""
    hidden = model(batch.inputs, return_hidden=True)  # (B, T, dim)
    sel = batch.loss_mask.bool()
    h = hidden[sel]  # (N, dim)
    logits = model.output(h) if model.output is not None else F.linear(h, model.tok_embeddings.weight)
    targets = batch.targets[sel]
    if not upweight or weight == 1.0:
        return F.cross_entropy(logits.float(), targets)
    w = torch.ones(len(targets), device=targets.device)
    w[torch.isin(targets, torch.tensor(list(upweight), device=targets.device))] = weight
    return (F.cross_entropy(logits.float(), targets, reduction="none") * w).sum() / w.sum()


def balance_categories(examples: Sequence[Mapping[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Unsafe examples repeated so every category has as many as the largest (safe ones once each): with the
    natural mix one code can win every unsafe verdict, as S14 did before this (docs/safety.md)."""
    rng = random.Random(seed)
    by_label: dict[str, list[dict[str, Any]]] = {}
    for e in examples:
        by_label.setdefault(e["label"], []).append(dict(e))
    most = max((len(v) for k, v in by_label.items() if k != SAFE), default=0)
    out = list(by_label.get(SAFE, []))
    for label, group in by_label.items():
        if label != SAFE:
            out += group + [rng.choice(group) for _ in range(most - len(group))]
    rng.shuffle(out)
    return out


@dataclass
class GuardTrainConfig:
    steps: int = 200
    batch: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.0
    seq_len: int = 512  # the guard prompt is ~250 tokens in SmolLM2's vocabulary; longer examples are dropped
    freeze_embeddings: bool = True
    balance: bool = False  # repeat unsafe examples so each category is equally common (balance_categories)
    category_weight: float = 1.0  # loss weight of the category digits against the other answer tokens
    seed: int = 0


def train_guard_lm(model: Any, chat: Any, examples: Sequence[Mapping[str, Any]], cfg: GuardTrainConfig) -> dict:
    """Fine-tune in place on the examples' guard dialogs; returns losses, steps, tokens/s."""
    from herd.posttrain.common import adamw, step

    if cfg.balance:
        examples = balance_categories(examples, cfg.seed)
    encoded = encode_dialogs(chat, [guard_dialog(e) for e in examples], cfg.seq_len)
    digits = sorted({i for d in "0123456789" for i in chat.tokenizer.encode(d)})
    epochs = max(1, -(-cfg.steps * cfg.batch // max(1, len(encoded))))
    sft = SFTConfig(epochs=epochs, batch_rows=cfg.batch, seq_len=cfg.seq_len, pack=False)
    batches = make_batches(encoded, sft, cfg.seed, getattr(chat.tokenizer, "pad_id", None) or 0)[: cfg.steps]
    if cfg.freeze_embeddings:
        model.tok_embeddings.weight.requires_grad_(False)
    model.train()
    optim = adamw(model, cfg.lr, cfg.weight_decay)
    losses, tokens, start = [], 0, time.perf_counter()
    for i, batch in enumerate(batches):
        loss = answer_loss(model, batch, digits, cfg.category_weight)
        step(optim, model, loss)
        losses.append(loss.item())
        tokens += batch.inputs.numel()
        if i % 25 == 0:
            log.info("guard sft: step %d/%d loss %.3f", i, len(batches), losses[-1])
    model.eval()
    seconds = time.perf_counter() - start
    return {"steps": len(losses), "examples": len(encoded), "first_loss": losses[0] if losses else None,
            "last_loss": sum(losses[-10:]) / max(1, len(losses[-10:])), "train_s": round(seconds, 1),
            "tokens_per_s": round(tokens / max(seconds, 1e-9), 1)}  # fmt: skip


def predict(guard: Any, examples: Sequence[Mapping[str, Any]]) -> list[str]:
    """'safe' or the first predicted code ('unsafe' when the category line was unusable), per example."""
    out = []
    for e in examples:
        v = guard(e["messages"])
        out.append(SAFE if not v.blocked else (v.categories[0] if v.categories else "unsafe"))
    return out


def predict_both(guard: Any, examples: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """predict() with the category line decoded greedily, constrained to one code, and scored as a closed set
    of whole codes (GuardClassifier only; the safe/unsafe verdict is the same in all three)."""
    greedy = predict(guard, examples)
    constrained = [p if p == SAFE else guard.constrained_category(e["messages"]) for p, e in zip(greedy, examples)]
    closed = [p if p == SAFE else _top(guard.category_scores(e["messages"])) for p, e in zip(greedy, examples)]
    return {"greedy": greedy, "constrained": constrained, "closed": closed}


def _top(scores: Mapping[str, float]) -> str:
    return max(scores, key=scores.__getitem__)


def category_accuracy(guard: Any, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """On the unsafe examples alone: how often the closed-set top code is the true one (chance 1/14), and
    the codes predicted — the category line measured apart from the safe/unsafe verdict."""
    from herd.safety.metrics import rate

    unsafe = [e for e in examples if e["label"] != SAFE]
    top = [_top(guard.category_scores(e["messages"])) for e in unsafe]
    hits = [t == e["label"] for t, e in zip(top, unsafe, strict=True)]
    return {"top1": rate(hits), "chance": 1 / 14, "predicted": dict(sorted(Counter(top).items()))}


def score(truth: Sequence[str], pred: Sequence[str], train_truth: Sequence[str]) -> dict[str, Any]:
    """Per-category P/R/F1 (safe + S1–S14 present in `truth`), binary safe/unsafe, and majority baselines."""
    labels = [SAFE, *sorted({t for t in truth if t != SAFE}, key=lambda c: int(c[1:]))]
    binary = ["unsafe" if t != SAFE else SAFE for t in truth]
    bpred = ["unsafe" if p != SAFE else SAFE for p in pred]
    btrain = ["unsafe" if t != SAFE else SAFE for t in train_truth]
    return {
        "categories": per_class_prf(truth, pred, labels),
        "binary": per_class_prf(binary, bpred, [SAFE, "unsafe"]),
        "majority_categories": majority_baseline(train_truth, truth, labels)["macro_f1"],
        "majority_binary": majority_baseline(btrain, binary, [SAFE, "unsafe"])["macro_f1"],
        "n": len(truth),
    }


def evaluate_sides(
    guard: Any, test: Sequence[Mapping], train: Sequence[Mapping], pred: Sequence[str] | None = None
) -> dict[str, Any]:
    """score() on the input side, the output side and both (of `pred`, else of predict(guard, test))."""
    pred = predict(guard, test) if pred is None else pred
    out = {}
    for side in ("input", "output", "all"):
        idx = [i for i, e in enumerate(test) if side in ("all", e["side"])]
        tr = [e["label"] for e in train if side in ("all", e["side"])]
        out[side] = score([test[i]["label"] for i in idx], [pred[i] for i in idx], tr)
    return out


def write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@dataclass
class GuardLMConfig:
    model: str = "smollm2"  # anything herd.load_model reads
    tokenizer: str = ""  # "" = the model's own
    keep_layers: int = 4  # 0 = all blocks
    out: str = "runs/safety/guard-lm"
    eval_limit: int = 0  # held-out conversations scored (0: all); a seeded sample otherwise
    compare_minilm: bool = True  # score herd's MiniLM guard (trained on the same topics) on the same set
    train: GuardTrainConfig = dataclasses.field(default_factory=GuardTrainConfig)


def build_examples(seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held-out) guard conversations from the bundled prompt set's topic split."""
    from herd.safety.prompts import load_prompt_set
    from herd.safety.trained import split

    train_rows, test_rows = split(load_prompt_set())
    return guard_examples(train_rows, seed), guard_examples(test_rows, seed + 1)


def run_train_guard(cfg: GuardLMConfig) -> dict[str, Any]:
    """The stage: data/{train,heldout}.jsonl, dropped/, model/ (HF folder + tokenizer), metrics.json."""
    from herd.core.stage import run_fn

    inputs = [Path(cfg.model)] if Path(cfg.model).exists() else []
    run_fn("safety-guard-lm", inputs, cfg, Path(cfg.out), lambda tmp: _train_stage(cfg, tmp))
    return json.loads((Path(cfg.out) / "metrics.json").read_text())


def _train_stage(cfg: GuardLMConfig, out: Path) -> dict[str, Any]:
    from herd.model import load_model, resolve
    from herd.model.convert import save_hf
    from herd.safety.classifier import GuardClassifier, guard_chat_format
    from herd.tokenizer import load_tokenizer

    torch.manual_seed(cfg.train.seed)
    tok = load_tokenizer(cfg.tokenizer or (cfg.model if cfg.model in ("smollm2", "llama3") else resolve(cfg.model)))
    chat = guard_chat_format(tok)
    train, test = build_examples(cfg.train.seed)
    lengths = [len(chat.encode_dialog(guard_dialog(e))[0]) for e in train]
    kept = [e for e, n in zip(train, lengths, strict=True) if n <= cfg.train.seq_len]
    dropped = [
        {**e, "reason": "too_long", "tokens": n} for e, n in zip(train, lengths, strict=True) if n > cfg.train.seq_len
    ]
    if cfg.eval_limit and cfg.eval_limit < len(test):
        test = random.Random(cfg.train.seed).sample(test, cfg.eval_limit)
    write_jsonl(out / "data" / "train.jsonl", kept)
    write_jsonl(out / "data" / "heldout.jsonl", test)
    write_jsonl(out / "dropped" / "dropped.jsonl", dropped)
    model = prune(load_model(resolve(cfg.model)), cfg.keep_layers)
    trained = train_guard_lm(model, chat, kept, cfg.train)
    save_hf(model, out / "model")
    _save_tokenizer(tok, out / "model")
    start = time.perf_counter()
    preds = predict_both(GuardClassifier(model, tok), test)
    metrics: dict[str, Any] = {"train": trained, "prompt_tokens": {"min": min(lengths), "max": max(lengths)}}
    for key, pred in (("lm_guard", preds["greedy"]), ("lm_guard_constrained", preds["constrained"]),
                      ("lm_guard_closed", preds["closed"])):  # fmt: skip
        metrics[key] = evaluate_sides(None, test, kept, pred)
    metrics["category_given_unsafe"] = category_accuracy(GuardClassifier(model, tok), test)
    metrics["eval_s"] = round(time.perf_counter() - start, 1)
    if cfg.compare_minilm:
        from herd.safety.prompts import load_prompt_set
        from herd.safety.trained import EmbeddingGuard, split

        minilm = EmbeddingGuard.train(split(load_prompt_set())[0])
        metrics["minilm_guard"] = evaluate_sides(minilm, test, kept)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    reasons = {"too_long": len(dropped)} if dropped else {}
    return {"in": len(train), "kept": len(kept), "dropped": len(dropped), "dropped_by_reason": reasons,
            "heldout": len(test), "steps": trained["steps"], "train_s": trained["train_s"]}  # fmt: skip


@torch.no_grad()
def pooled_features(guard: Any, examples: Sequence[Mapping[str, Any]]) -> Any:
    """The guard's final hidden states averaged over its prompt, one row per conversation (numpy)."""
    import numpy as np

    device = guard.model.tok_embeddings.weight.device
    rows = []
    for e in examples:
        ids = torch.tensor([guard.encode(e["messages"])], device=device)
        rows.append(guard.model(ids, return_hidden=True)[0].float().mean(0).cpu().numpy())
    return np.stack(rows)


def head_probe(guard: Any, train: Sequence[Mapping[str, Any]], test: Sequence[Mapping[str, Any]]) -> list[str]:
    """A probe, not part of the Llama Guard format: the guard's own verdict (P(unsafe) ≥ its threshold), and for
    unsafe ones the code from a logistic-regression head on pooled hidden states (pooled_features), fitted on
    the unsafe training conversations. Tells whether the trained blocks carry the category at all where the
    answer line does not read it out (docs/safety.md)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    unsafe = [e for e in train if e["label"] != SAFE]
    x = pooled_features(guard, unsafe)
    scaler = StandardScaler().fit(x)
    head = LogisticRegression(max_iter=2000, C=0.1).fit(scaler.transform(x), [e["label"] for e in unsafe])
    codes = head.predict(scaler.transform(pooled_features(guard, test)))
    p = guard.p_unsafe([e["messages"] for e in test])
    return [SAFE if pu < guard.threshold else str(c) for pu, c in zip(p, codes, strict=True)]


def rescore(folder: str | Path, out: str | Path) -> dict[str, Any]:
    """Score a trained guard folder (`model/`, `data/`) again with every category decoding, as a stage:
    out/metrics.json + MANIFEST.json. For guards trained before the closed-set scoring existed."""
    from herd.core.stage import run_fn

    src = Path(folder)
    for need in ("model", "data/train.jsonl", "data/heldout.jsonl"):
        if not (src / need).exists():
            raise FileNotFoundError(f"{src / need}: not found (a `herd safety train-guard` output folder)")
    run_fn("safety-guard-score", [src / "model", src / "data"], {"folder": str(src)}, Path(out),
           lambda tmp: _rescore(src, tmp))  # fmt: skip
    return json.loads((Path(out) / "metrics.json").read_text())


def _rescore(src: Path, out: Path) -> dict[str, Any]:
    from herd.safety.classifier import GuardClassifier

    def read(name: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in (src / "data" / name).read_text(encoding="utf-8").splitlines() if x.strip()]

    train, test = read("train.jsonl"), read("heldout.jsonl")
    guard = GuardClassifier.load(src / "model")
    start = time.perf_counter()
    preds = predict_both(guard, test)
    metrics: dict[str, Any] = {f"lm_guard_{k}": evaluate_sides(None, test, train, v) for k, v in preds.items()}
    metrics["category_given_unsafe"] = category_accuracy(guard, test)
    metrics["eval_s"] = round(time.perf_counter() - start, 1)
    if len({e["label"] for e in train if e["label"] != SAFE}) > 1:
        metrics["pooled_head_probe"] = evaluate_sides(None, test, train, head_probe(guard, train, test))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return {"heldout": len(test), "eval_s": metrics["eval_s"]}


def _save_tokenizer(tok: Any, folder: Path) -> None:
    """Beside the weights, so GuardClassifier.load(folder) and `herd chat --guard folder` find it."""
    from herd.tokenizer.hf import HFTokenizer

    if isinstance(tok, HFTokenizer):  # an HF vocabulary (SmolLM2's, from its GGUF): tokenizer.json
        tok.save(folder)
    else:  # a tiktoken ranks file
        tok.save(folder / "tokenizer.model")


if __name__ == "__main__":  # python -m herd.safety.guard_lm rescore GUARD_FOLDER OUT
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "rescore":
        sys.exit("usage: python -m herd.safety.guard_lm rescore GUARD_FOLDER OUT")
    m = rescore(sys.argv[2], sys.argv[3])
    for key in ("lm_guard_greedy", "lm_guard_constrained", "lm_guard_closed", "pooled_head_probe"):
        if key not in m:
            continue
        a = m[key]["all"]
        print(f"{key:22s} binary macro-F1 {a['binary']['macro_f1']:.3f}  categories macro-F1 "
              f"{a['categories']['macro_f1']:.3f} (majority {a['majority_categories']:.3f})  n={a['n']}")  # fmt: skip
    print("closed-set top-1 on unsafe:", json.dumps(m["category_given_unsafe"]))
