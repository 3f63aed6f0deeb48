"""SFT peak memory (RSS) on this machine, each SFT path against the peer measured in the same run:
full-vocabulary logits at every position, all rows in one forward (herd's SFT before the change that
docs/posttraining.md "SFT memory" describes, rebuilt here from `herd.posttrain.losses.sft_loss`).

    .venv/bin/python benchmarks/sft_memory.py [--model smollm2] [--steps 2]

Each path runs in a fresh process (peak RSS is per process: `resource.getrusage(...).ru_maxrss`), on the
same synthetic rows (200-500 tokens, half of each row trained, packed to 512, 4 rows a step, AdamW, fp32).
Writes benchmarks/results/sft-memory-DATE.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

PATHS = {  # name -> SFTConfig fields; "full_logits" swaps in the old loss
    "full_logits": {},
    "trained_positions": {},
    "+checkpointing": {"activation_checkpointing": True},
    "+micro_rows=1": {"activation_checkpointing": True, "micro_rows": 1},
}


def run_one(name: str, model_name: str, steps: int) -> dict:
    """Train `steps` SFT steps on the `name` path in this process; its peak RSS and first loss."""
    import torch

    from herd.model import load_model
    from herd.posttrain import sft
    from herd.posttrain.losses import sft_loss

    torch.set_num_threads(1)
    if name == "full_logits":  # the peer: logits (B, T, V) for every position, as before the change

        def full_nll(model, batch):  # the same signature as sft.summed_nll
            layout = () if batch.doc_ids is None else sft.document_causal(batch.doc_ids, model.cfg.attn_impl)
            n = max(int(batch.loss_mask.sum()), 1)
            return sft_loss(model(batch.inputs, *layout), batch.targets, batch.loss_mask) * n

        sft.summed_nll = full_nll
    rng = random.Random(0)
    lengths = [rng.randint(200, 500) for _ in range(64)]
    examples = [
        sft.Example([rng.randrange(1000, 40000) for _ in range(n)], [0] * (n // 2) + [1] * (n - n // 2))
        for n in lengths
    ]
    cfg = sft.SFTConfig(lr=2e-5, batch_rows=4, seq_len=512, max_steps=steps, **PATHS[name])
    start = time.perf_counter()
    result = sft.train_sft(load_model(model_name), examples, cfg)
    return {
        "path": name,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,  # KiB on Linux
        "first_loss": result["variants"][0]["first_loss"],
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--one", choices=list(PATHS), help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.model, args.steps)))
        return
    rows = []
    for name in PATHS:
        cmd = [sys.executable, __file__, "--one", name, "--model", args.model, "--steps", str(args.steps)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    peer = rows[0]["peak_rss_gb"]
    from machine import cpu_name

    print(f"{cpu_name()} · {platform.python_version()} · {date.today()} · model {args.model}, {args.steps} steps")
    print(f"{'path':<20} {'peak RSS GB':>12} {'vs full_logits':>15} {'seconds':>8}  first loss")
    for r in rows:
        ratio = r["peak_rss_gb"] / peer
        print(f"{r['path']:<20} {r['peak_rss_gb']:>12.2f} {ratio:>14.2f}x {r['seconds']:>8}  {r['first_loss']}")
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"sft-memory-{date.today()}.json").write_text(json.dumps({"model": args.model, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
