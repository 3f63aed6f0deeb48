"""`herd tokenizer train|stats|encode|decode`: thin wrappers over herd.tokenizer and herd.data (imported lazily)."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tokenizer", help="train, inspect and run tokenizers")
    sub = parser.add_subparsers(dest="tokenizer_command", required=True, metavar="ACTION")

    train = sub.add_parser("train", help="train (or extend) a byte-level BPE in Meta's tiktoken format")
    train.add_argument("config", nargs="?", help="TOML config (TokenizerTrainConfig); optional")
    train.add_argument("overrides", nargs="*", help="key=value, e.g. inputs='[\"corpus/\"]' vocab_size=8192")
    train.set_defaults(func=_train)

    stats = sub.add_parser("stats", help="chars and bytes per token, per source and language")
    stats.add_argument("paths", nargs="+", help="curation stage folders, text/JSONL/Parquet files or folders")
    stats.add_argument("-t", "--tokenizer", action="append", help="name or path (repeat to compare; default llama3)")
    stats.add_argument("--language", default="und", help="language of plain text files (JSONL rows carry their own)")
    stats.add_argument("--text-key", default="text")
    stats.add_argument("--max-chars", type=int, default=0, help="stop reading after this many characters")
    stats.add_argument("--json", help="also write the rows to this JSON file")
    stats.set_defaults(func=_stats)

    enc = sub.add_parser("encode", help="print token ids for text (argument, --file or stdin)")
    enc.add_argument("text", nargs="?")
    enc.add_argument("-t", "--tokenizer", default="llama3")
    enc.add_argument("--file", help="read the text from this file")
    enc.add_argument("--bos", action="store_true")
    enc.add_argument("--eos", action="store_true")
    enc.add_argument("--allow-special", action="store_true", help="read special-token text as special tokens")
    enc.add_argument("--pieces", action="store_true", help="also print each token's text")
    enc.set_defaults(func=_encode)

    dec = sub.add_parser("decode", help="print the text of token ids (arguments or stdin)")
    dec.add_argument("ids", nargs="*", type=int)
    dec.add_argument("-t", "--tokenizer", default="llama3")
    dec.set_defaults(func=_decode)


def _train(args: argparse.Namespace) -> int:
    from herd.core.config import load_config
    from herd.core.stage import run_stage
    from herd.data.tokenizer_stage import TokenizerStage, TokenizerTrainConfig

    config, overrides = args.config, list(args.overrides)
    if config and "=" in config:  # no config file, only overrides
        config, overrides = None, [config, *overrides]
    cfg = load_config(TokenizerTrainConfig, config, overrides)
    m = run_stage(TokenizerStage(cfg))
    print(json.dumps({"out": cfg.out, **m.counts}))
    return 0


def _stats(args: argparse.Namespace) -> int:
    from herd.data.documents import iter_documents
    from herd.tokenizer import Document, compression_stats, load_tokenizer
    from herd.tokenizer.stats import format_table

    records = iter_documents(args.paths, text_key=args.text_key, language=args.language, max_chars=args.max_chars)
    docs = [Document(r["text"], r["source"], r["language"]) for r in records]
    if not docs:
        raise ValueError("no documents found in " + " ".join(args.paths))
    names = args.tokenizer or ["llama3"]
    results = {name: compression_stats(load_tokenizer(name), docs) for name in names}
    print(format_table(results))
    if args.json:
        from herd.core.io import atomic_write_text

        rows = {name: [r.to_dict() for r in rs] for name, rs in results.items()}
        atomic_write_text(args.json, json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    return 0


def _encode(args: argparse.Namespace) -> int:
    from herd.tokenizer import load_tokenizer

    if args.file:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    else:
        text = args.text if args.text is not None else sys.stdin.read()
    tok = load_tokenizer(args.tokenizer)
    ids = tok.encode(text, bos=args.bos, eos=args.eos, allowed_special="all" if args.allow_special else frozenset())
    print(" ".join(map(str, ids)))
    if args.pieces:
        for i in ids:
            print(f"{i:>8} {tok.decode([i])!r}")
    return 0


def _decode(args: argparse.Namespace) -> int:
    from herd.tokenizer import load_tokenizer

    ids = args.ids or [int(x) for x in sys.stdin.read().split()]
    tok = load_tokenizer(args.tokenizer)
    bad = [i for i in ids if not 0 <= i < tok.vocab_size]
    if bad:
        raise ValueError(f"token id {bad[0]} is outside 0..{tok.vocab_size - 1}")
    sys.stdout.write(tok.decode(ids) + "\n")
    return 0
