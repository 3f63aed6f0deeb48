"""`herd curate CONFIG [key=value ...]`: the pretraining-data pipeline [P §3.1]; `--build-corpus` assembles
the bundled corpus from downloaded registry packages."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

DEFAULT_SOURCES = "runs/corpus-sources"
DEFAULT_CORPUS = "runs/corpus"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("curate", help="curate raw pages/documents into mixed, scored shards")
    p.add_argument("config", nargs="?", help="TOML config (herd.data.pipeline.CurateConfig)")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. executor.tasks=4 quality.judge=none")
    p.add_argument("--build-corpus", action="store_true", help="assemble the bundled corpus and exit")
    p.add_argument("--sources", default=DEFAULT_SOURCES, help="downloaded packages (scripts/fetch_corpus.sh)")
    p.add_argument("--corpus", default=DEFAULT_CORPUS, help="where --build-corpus writes the corpus")
    p.set_defaults(func=curate_command)


def curate_command(args: argparse.Namespace) -> int:
    if args.build_corpus:
        from herd.data.bundle import build_corpus

        print(json.dumps(build_corpus(args.sources, args.corpus)))
        return 0
    if not args.config:
        raise ValueError("give a config (e.g. configs/curate/sample.toml) or --build-corpus")
    from herd.core.config import load_config, save_resolved
    from herd.data.funnel import funnel_table
    from herd.data.pipeline import CurateConfig, run_curation

    cfg = load_config(CurateConfig, args.config, args.overrides)
    if cfg.inputs == [DEFAULT_CORPUS] and not Path(DEFAULT_CORPUS).exists() and Path(args.sources).is_dir():
        from herd.data.bundle import build_corpus

        build_corpus(args.sources, DEFAULT_CORPUS)
    save_resolved(cfg, cfg.out)
    judges = build_judges(cfg.quality.judge) if cfg.quality.enabled and cfg.quality.judge != "none" else None
    results = run_curation(cfg, judges)
    print(funnel_table(results))
    return 0


# ---------------------------------------------------------------- the LLM judge (top tier: may import herd.model)

PROMPTS = {
    "quality": (
        "Rate the following text as training data for a language model. Answer 2 if it is well-written, "
        "informative prose or documentation; 1 if it is acceptable but low in information; 0 if it is spam, "
        "advertising, boilerplate, headers or gibberish. Answer with one digit.\n\nText:\n{text}"
    ),
    "code": (
        "Does the following text contain programming source code or explain programming? Answer 1 for yes "
        "or 0 for no. Answer with one digit.\n\nText:\n{text}"
    ),
    "math": (
        "Does the following text contain mathematics, formulas or step-by-step logical reasoning (STEM)? "
        "Answer 1 for yes or 0 for no. Answer with one digit.\n\nText:\n{text}"
    ),
}
JUDGE_CHARS = 600  # of each document shown to the judge: a small model's context and a CPU's patience


def build_judges(name: str) -> dict[str, object]:
    """One `judge(texts) -> labels` per prompt kind: the label digit the model rates most likely next."""

    from herd.model import load_model
    from herd.model.judge import digit_probs, expected_digit, rank_bins
    from herd.tokenizer import load_chat_format, load_tokenizer

    model = load_model(name).eval()
    tok = load_tokenizer(name)
    chat = load_chat_format(tok)

    def make(kind: str, n_labels: int):
        def judge(texts: Sequence[str]) -> list[int]:
            prompts = [PROMPTS[kind].format(text=text[:JUDGE_CHARS]) for text in texts]
            return rank_bins([expected_digit(digit_probs(model, chat, p, n_labels)) for p in prompts], n_labels)

        return judge

    from herd.data.quality import JUDGE_KINDS

    return {kind: make(kind, n) for kind, n in JUDGE_KINDS.items()}
