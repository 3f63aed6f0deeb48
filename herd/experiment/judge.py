"""Measurements an experiment runs on each finished run folder (`experiment.judge = NAME`), each a stage
in `<run>/judge/` (skipped when it matches the models it judges); the metric `judge:<key>` reads it.

`rm_win_rate` (posttrain runs): on the held-out preference prompts (never trained on by the RM or DPO),
the last round's DPO model and the SFT model it started from each answer greedily, and that round's reward
model scores both answers; the win rate is the share of prompts where the DPO answer scores higher (a tie
counts ½). This is the paper's question for DPO — does it improve on the SFT model [P §4.1.4] — asked
of a judge that is itself a model, as the paper's human evaluations are not available here.

    python -m herd.experiment.judge rm_win_rate runs/experiments/dpo/dpo/seed-0
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from herd.core.config import load_config
from herd.core.manifest import Manifest
from herd.core.stage import run_fn

MAX_NEW_TOKENS = 48  # the toy config's replies are one or two sentences


def rm_win_rate(run: Path, max_new_tokens: int = MAX_NEW_TOKENS) -> Manifest:
    """The last round's DPO model vs its SFT model, judged by the round's RM, on held-out prompts."""
    from herd.posttrain.rounds import PosttrainConfig

    cfg = load_config(PosttrainConfig, run / "config.resolved.toml")
    last, prefs = run / f"round-{cfg.rounds}", Path(cfg.bundle.out) / "prefs.jsonl"
    inputs = [last / "sft", last / "dpo", last / "rm", prefs]
    settings = {"judge": "rm_win_rate", "max_new_tokens": max_new_tokens, "seed": cfg.seed}
    return run_fn("judge-rm-win-rate", inputs, settings, run / "judge", lambda _: _win_rate(cfg, last, max_new_tokens))


def _win_rate(cfg: Any, last: Path, max_new_tokens: int) -> dict[str, Any]:
    import torch

    from herd.model import load_model
    from herd.posttrain.data import read_preferences, split_held_out
    from herd.posttrain.reward import RewardModel
    from herd.tokenizer import load_tokenizer
    from herd.tokenizer.chat import load_chat_format

    torch.manual_seed(cfg.seed)
    # The same held-out split post-training used for the RM and DPO held-out metrics.
    prefs = read_preferences(Path(cfg.bundle.out) / "prefs.jsonl", cfg.strengths)
    _, held = split_held_out(prefs, cfg.held_out_fraction, cfg.seed)
    chat = load_chat_format(load_tokenizer(str(last / "dpo")))
    prompts = [chat.encode_prompt(p.prompt) for p in held]
    rm = RewardModel.load(last / "rm")
    rewards = {
        name: _answer_rewards(load_model(last / name), rm, chat, prompts, max_new_tokens) for name in ("dpo", "sft")
    }
    wins = [1.0 if d > s else 0.5 if d == s else 0.0 for d, s in zip(rewards["dpo"], rewards["sft"])]
    n = max(len(wins), 1)
    return {
        "prompts": len(wins),
        "win_rate": sum(wins) / n,
        "ties": sum(w == 0.5 for w in wins),
        "reward_dpo": sum(rewards["dpo"]) / n,
        "reward_sft": sum(rewards["sft"]) / n,
        "reward_gap": (sum(rewards["dpo"]) - sum(rewards["sft"])) / n,
    }


def _answer_rewards(model: Any, rm: Any, chat: Any, prompts: list[list[int]], max_new_tokens: int) -> list[float]:
    """Greedy answers (deterministic, so the comparison is between models, not samples), scored by the RM
    as the finished turn it was trained on."""
    from herd.model.generate import generate
    from herd.posttrain.rejection import end_token
    from herd.posttrain.reward import score

    stop, end = sorted(chat.tokenizer.stop_ids), end_token(chat)
    model.eval()
    out: list[float] = []
    for i in range(0, len(prompts), 16):
        batch = prompts[i : i + 16]
        answers = generate(model, batch, max_new_tokens, temperature=0.0, stop_ids=stop)
        out += score(rm, batch, [[*a, end] for a in answers])
    return out


JUDGES = {"rm_win_rate": rm_win_rate}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in JUDGES:
        print(f"usage: python -m herd.experiment.judge {{{','.join(JUDGES)}}} RUN_DIR", file=sys.stderr)
        return 2
    m = JUDGES[argv[0]](Path(argv[1]))
    print(m.counts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
