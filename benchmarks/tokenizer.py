"""Encode throughput: herd's Llama 3 tokenizer vs raw tiktoken vs HF tokenizers (and Meta's reference).

    .venv/bin/python benchmarks/tokenizer.py [--mb 8] [--repeats 5] [--threads N]

Same text, same vocabulary (Meta's tokenizer.model), same run. Single-thread: one document at a time,
every contender in turn on each document, the best of `--repeats` per document; batched: the whole
corpus in batches of 32 documents through each library's batch call on N threads, the same way.
Interleaving makes load from other work on the machine fall on every contender alike. Prints the
machine, versions, date and ratios; writes benchmarks/results/tokenizer.json.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import sys
import sysconfig
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "tokenizer.json"


def corpus(mb: float) -> list[str]:
    """Documents: stdlib modules (code + English), then gettext translations if the machine has them."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    docs = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    docs += _translations()
    budget, out = int(mb * 1e6), []
    for doc in docs:
        if budget <= 0:
            break
        out.append(doc)
        budget -= len(doc.encode("utf-8"))
    return out


def _translations() -> list[str]:
    import gettext

    out = []
    for f in sorted(Path("/usr/share/locale").glob("*/LC_MESSAGES/*.mo"))[:400]:
        try:
            with open(f, "rb") as fh:
                out.append("\n".join(v for v in gettext.GNUTranslations(fh)._catalog.values() if isinstance(v, str)))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
    return out


def orders(names: list[str]) -> list[list[str]]:
    """Every rotation of the names, forwards and backwards: each contender runs right after each other
    equally often, so the cache one leaves warm (the document, a shared Encoding) favours nobody."""
    back = names[::-1]
    return [names[k:] + names[:k] for k in range(len(names))] + [back[k:] + back[:k] for k in range(len(back))]


def time_single(fns: dict[str, Callable[[Any], object]], docs: list[Any], repeats: int) -> dict[str, float]:
    """Sum over documents of each contender's best time on that document.

    Per-document minima over repeats filter out bursts from other work sharing the cores, which
    otherwise swamp a 5% difference.
    """
    plan = orders(list(fns))
    best = [dict.fromkeys(fns, float("inf")) for _ in docs]
    for r in range(repeats):
        for i, doc in enumerate(docs):
            for name in plan[(i + r) % len(plan)]:
                t = time.perf_counter()
                fns[name](doc)
                best[i][name] = min(best[i][name], time.perf_counter() - t)
    return {name: sum(b[name] for b in best) for name in fns}


def time_batched(fns: dict[str, Callable[[list[str]], object]], docs: list[str], repeats: int, size: int = 32):
    """`time_single` over batches of `size` documents, each passed to the contender's batch call."""
    batches = [docs[i : i + size] for i in range(0, len(docs), size)]
    return time_single(fns, batches, repeats)


def machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as f:
        cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    versions = {p: importlib.metadata.version(p) for p in ("tiktoken", "tokenizers", "llama-models", "herd")}
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), **versions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=8.0, help="megabytes of text")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import tiktoken
    from llama_models.llama3.tokenizer import Tokenizer as MetaTokenizer

    from herd.tokenizer import llama3_path, load_tokenizer

    herd = load_tokenizer("llama3")
    raw = tiktoken.Encoding("raw", pat_str=herd.pat_str, mergeable_ranks=herd.ranks, special_tokens=herd.special_ids)
    hf = herd.to_hf()
    hf.encode_special_tokens = True  # special-token text as text, like the others
    meta = MetaTokenizer(llama3_path())

    docs = corpus(args.mb)
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    # The same ids from every contender, or the timing means nothing.
    assert [herd.encode(d) for d in docs] == [raw.encode_ordinary(d) for d in docs]
    assert [e.ids for e in hf.encode_batch(docs[:200], add_special_tokens=False)] == [
        herd.encode(d) for d in docs[:200]
    ]

    n = args.threads
    # "tiktoken" is a separate Encoding built from the same ranks, as a user would build it; two builds of
    # one vocabulary differ by up to ~15% here (memory placement), so "tiktoken_same" (the Encoding inside
    # herd's Tokenizer, called directly) isolates what herd's own code costs.
    single: dict[str, Callable[[str], object]] = {
        "herd": herd.encode,
        "tiktoken": raw.encode_ordinary,
        "tiktoken_same": herd.model.encode_ordinary,
        "hf_tokenizers": lambda d: hf.encode(d, add_special_tokens=False),
        "llama_models": lambda d: meta.encode(d, bos=False, eos=False),
    }
    batched: dict[str, Callable[[list[str]], object]] = {
        "herd": lambda b: herd.encode_batch(b, num_threads=n),
        "tiktoken": lambda b: raw.encode_ordinary_batch(b, num_threads=n),
        "tiktoken_same": lambda b: herd.model.encode_ordinary_batch(b, num_threads=n),
        "hf_tokenizers": lambda b: hf.encode_batch(b, add_special_tokens=False),
    }
    timings = {"single": time_single(single, docs, args.repeats), "batched": time_batched(batched, docs, args.repeats)}
    report(args, docs, mb, timings)


def report(args: argparse.Namespace, docs: list[str], mb: float, timings: dict[str, dict[str, float]]) -> None:
    info = machine()
    date = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"# tokenizer encode benchmark  {date}")
    print("# machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    print(f"# text: {len(docs)} documents, {mb:.2f} MB; best of {args.repeats}; batched on {args.threads} threads")
    print(f"# command: {' '.join(sys.argv)}\n")
    result = {
        "date": date,
        "command": " ".join(sys.argv),
        "machine": info,
        "documents": len(docs),
        "megabytes": round(mb, 3),
        "modes": {},
    }
    for mode, times in timings.items():
        base = times["tiktoken"]
        print(f"{mode:<8} {'contender':<14} {'MB/s':>8} {'time/tiktoken':>14}")
        rows = {}
        for name, t in times.items():
            rows[name] = {"seconds": round(t, 4), "mb_per_s": round(mb / t, 2), "time_vs_tiktoken": round(t / base, 3)}
            print(f"{'':<8} {name:<14} {mb / t:>8.2f} {t / base:>14.3f}")
        result["modes"][mode] = rows
        for peer in ("tiktoken", "tiktoken_same"):
            overhead = times["herd"] / times[peer] - 1
            rows["herd"][f"overhead_vs_{peer}"] = round(overhead, 4)
            print(f"{'':<8} herd overhead over {peer}: {overhead:+.1%} (target ≤ +5%)")
        print()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
