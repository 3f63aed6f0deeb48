"""`herd vision {data,train,convert,info} ...`: image-text data, the bundled vision recipe, HF Mllama I/O."""

from __future__ import annotations

import argparse

from herd.cli.common import add_config_args, load_args_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vision", help="image encoder + cross-attention adapters on a frozen Llama [P §7]")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    d = verbs.add_parser("data", help="generate, de-duplicate and resample image-text pairs (a stage)")
    add_config_args(d, "configs/vision/tiny.toml")
    d.set_defaults(func=data_command)
    t = verbs.add_parser("train", help="pre-train → anneal → SFT the adapter; held-out VQA vs blind baselines")
    add_config_args(t, "configs/vision/tiny.toml")
    t.set_defaults(func=train_command)
    c = verbs.add_parser("convert", help="read an HF Mllama folder into herd and write it back (a round trip)")
    c.add_argument("src", help="a folder with config.json + safetensors (MllamaForConditionalGeneration)")
    c.add_argument("dst", help="the folder to write")
    c.set_defaults(func=convert_command)
    k = verbs.add_parser("compare", help="paired held-out VQA gain of run A over run B (two report.json)")
    k.add_argument("a", help="report.json of run A")
    k.add_argument("b", help="report.json of run B (same data, seed and eval_limit)")
    k.set_defaults(func=compare_command)
    i = verbs.add_parser("info", help="shapes and parameter counts of the vision presets")
    i.set_defaults(func=info_command)


def data_command(args: argparse.Namespace) -> int:
    from herd.vision.data import run_data_stage
    from herd.vision.train import VisionTrainConfig

    m = run_data_stage(load_args_config(VisionTrainConfig, args).data)
    print(f"{m.counts['in']} pairs in, {m.counts['kept']} kept, dropped {m.counts['dropped']}")
    return 0


def train_command(args: argparse.Namespace) -> int:
    from herd.vision.train import VisionTrainConfig, format_report, run_recipe

    cfg = load_args_config(VisionTrainConfig, args)
    print(format_report(run_recipe(cfg)))
    print(f"report: {cfg.out_dir}/report.json")
    return 0


def compare_command(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from herd.vision.train import compare_runs

    a, b = (json.loads(Path(p).read_text()) for p in (args.a, args.b))
    g = compare_runs(a, b)
    print(f"A - B: {100 * g['gain']:+.1f} ± {100 * g['ci95']:.1f} points (paired, n={g['n']})")
    return 0


def convert_command(args: argparse.Namespace) -> int:
    from herd.vision.convert import load_hf_vision, save_hf_vision

    model = load_hf_vision(args.src)
    save_hf_vision(model, args.dst)
    print(f"{args.src} -> {args.dst}: cross-attention before text layers {list(model.cfg.cross_layers)}")
    return 0


def info_command(args: argparse.Namespace) -> int:
    import torch

    from herd.vision.adapter import VisionLanguageModel
    from herd.vision.config import VISION_PRESETS

    for name, cfg in VISION_PRESETS.items():
        with torch.device("meta"):
            model = VisionLanguageModel(cfg)
        enc = sum(p.numel() for p in model.encoder.parameters())
        adapter = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("text.", "encoder.")))
        print(f"{name:>4}: encoder {enc / 1e6:,.1f}M ({cfg.encoder.n_layers}+{cfg.encoder.n_global_layers} layers, "
              f"{cfg.encoder.image_size}px tiles), adapter {adapter / 1e6:,.1f}M, "
              f"{len(cfg.cross_layers)} cross-attention blocks on a {cfg.text.n_layers}-layer text model")  # fmt: skip
    return 0
