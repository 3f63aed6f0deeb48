"""Can the speech recipe's frozen tiny LM copy? Oracle copy WER of `herd.speech.train.build_tiny_lm`, each
copy-document setting against the peer trained in the same run on text alone (no copy documents).

    .venv/bin/python benchmarks/speech_copy_lm.py [--data runs/speech/tiny/data] [--n 24]

The LM is given the *true* tokens of a held-out test sentence S as "<bos> S\\n" and as "<bos>{ASR prompt} S\\n"
and continues greedily (to <eot>, a newline or 30 tokens); WER [95% bootstrap CI] of that continuation against
S. A speech model built on this LM cannot transcribe better than the LM copies (docs/speech.md, "ASR").
Every LM: the recipe's `[tiny_lm]` (configs/speech/train_tiny.toml) with only the copy fields changed.
Writes benchmarks/results/speech-copy-lm-DATE.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import torch

from herd.speech.data import read_examples
from herd.speech.train import build_tiny_lm, end_of_turn, load_speech_train_config, wer_with_ci

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = {  # name -> TinyLMConfig fields over the recipe's
    "text only (peer)": {"copy_fraction": 0.0},
    "random-string copies": {"copy_sentence_fraction": 0.0, "copy_prompt_fraction": 0.0},
    "the recipe": {},
}


@torch.no_grad()
def continue_greedy(lm: torch.nn.Module, prefix: list[int], stops: set[int], max_new: int = 30) -> list[int]:
    ids, out = list(prefix), []
    for _ in range(max_new):
        nxt = int(lm(torch.tensor([ids]))[0, -1].argmax())
        if nxt in stops:
            break
        out.append(nxt)
        ids.append(nxt)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="runs/speech/tiny/data")
    ap.add_argument("--config", default=str(ROOT / "configs/speech/train_tiny.toml"))
    ap.add_argument("--n", type=int, default=24, help="held-out test sentences")
    ap.add_argument("--steps", type=int, default=0, help="LM steps (0: the config's)")
    args = ap.parse_args()
    cfg = load_speech_train_config(args.config)
    train = [r for r in read_examples(args.data, "train") if r["task"] == "asr"]
    tests = sorted({r["target"] for r in read_examples(args.data, "test_sentences") if r["task"] == "asr"})[: args.n]
    texts = sorted({r["target"] for r in train} | {r["prompt"] for r in train})
    prompt = train[0]["prompt"]
    rows = []
    for name, fields in SETTINGS.items():
        lm_cfg = replace(cfg.tiny_lm, **fields, **({"steps": args.steps} if args.steps else {}))
        t0 = time.process_time()
        lm, tok = build_tiny_lm(texts, lm_cfg, cfg.seed, (prompt,))
        cpu = time.process_time() - t0
        newline = tok.encode("\n")
        stops = {end_of_turn(tok), *newline}
        res = {"setting": name, "steps": lm_cfg.steps, "train_cpu_s": round(cpu, 1)}
        for layout, head in (("S", []), ("prompt S", tok.encode(prompt))):
            hyps = [
                tok.decode(continue_greedy(lm, [tok.bos_id, *head, *tok.encode(" " + s), *newline], stops)).strip()
                for s in tests
            ]
            res[layout] = wer_with_ci(tests, hyps, cfg.seed)
        rows.append(res)
    from machine import cpu_name

    print(f"{cpu_name()} · {platform.python_version()} · torch {torch.__version__} · {date.today()} · "
          f"{len(tests)} test sentences, {torch.get_num_threads()} threads")  # fmt: skip
    heads = ("WER 'S\\n' -> S", "WER 'prompt S\\n' -> S")
    print(f"{'setting':<22} {'steps':>5} {heads[0]:>22} {heads[1]:>22} {'vs peer':>8} {'CPU s':>7}")
    peer = rows[0]["prompt S"]["wer"]
    for r in rows:
        a, b = r["S"], r["prompt S"]
        cells = [f"{c['wer']:>6.3f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]" for c in (a, b)]
        ratio = b["wer"] / max(peer, 1e-9)
        print(f"{r['setting']:<22} {r['steps']:>5} {cells[0]:>22} {cells[1]:>22} {ratio:>7.2f}x {r['train_cpu_s']:>7}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"speech-copy-lm-{date.today()}.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
