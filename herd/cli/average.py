"""`herd average A B ... --out DIR [--weights ...]`: average checkpoints into one model (Polyak / model soup)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("average", help="average model checkpoints (HF dirs, GGUF, Meta dirs) into one")
    p.add_argument("models", nargs="+", help="checkpoints with identical shapes")
    p.add_argument("--out", required=True, help="output HF-format directory")
    p.add_argument("--weights", type=float, nargs="+", default=None, help="one weight per checkpoint")
    p.set_defaults(func=average_command)


def average_command(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from herd.model import load_model
    from herd.model.convert import save_hf
    from herd.train.averaging import average_state_dicts

    models = [load_model(m) for m in args.models]
    if any(m.cfg != models[0].cfg for m in models[1:]):
        raise ValueError("average: checkpoints have different model configs")
    merged = models[0]
    merged.load_state_dict(average_state_dicts([m.state_dict() for m in models], args.weights))
    out = save_hf(merged, args.out)
    tok = Path(args.models[0]) / "tokenizer.model"
    if tok.is_file():
        shutil.copyfile(tok, out / "tokenizer.model")
    print(f"averaged {len(models)} checkpoints → {out}")
    return 0
