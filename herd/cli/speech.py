"""`herd speech {data,train} CONFIG [a.b=c ...]`: the espeak-ng speech data stage, and encoder pre-training +
adapter SFT with the LM frozen, ending in WER on held-out sentences and voices [P §8]. `herd speech {tn,prosody}`:
the speech-generation components (text normalization, prosody) over frozen LM embeddings."""

from __future__ import annotations

import argparse
import json

from herd.cli.common import add_config_args, load_args_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("speech", help="speech data (espeak-ng) and speech encoder/adapter training [P §8]")
    steps = p.add_subparsers(dest="step", required=True, metavar="STEP")
    d = steps.add_parser("data", help="synthesize ASR/AST/spoken-dialogue examples with espeak-ng")
    add_config_args(d, "configs/speech/tiny.toml")
    d.set_defaults(func=data_command)
    t = steps.add_parser("train", help="BEST-RQ pre-training, adapter + encoder SFT (LM frozen), WER")
    add_config_args(t, "configs/speech/train_tiny.toml")
    t.set_defaults(func=train_command)
    n = steps.add_parser("tn", help="streaming text normalization over frozen LM embeddings: train + TN exact match")
    add_config_args(n, "configs/speech/tn.toml")
    n.set_defaults(func=tn_command)
    r = steps.add_parser("prosody", help="phone duration/F0 model over frozen LM embeddings: train, eval, playback")
    add_config_args(r, "configs/speech/prosody.toml")
    r.set_defaults(func=prosody_command)


def data_command(args: argparse.Namespace) -> int:
    from herd.speech.data import SpeechDataConfig, run_speech_data

    cfg = load_args_config(SpeechDataConfig, args)
    m = run_speech_data(cfg)
    print(json.dumps(m.counts, indent=1))
    print(f"wrote {cfg.out}/examples.jsonl, audio/, dropped/")
    return 0


def train_command(args: argparse.Namespace) -> int:
    from herd.speech.train import SpeechTrainConfig, run_speech_train

    cfg = load_args_config(SpeechTrainConfig, args)
    m = run_speech_train(cfg)
    for key, value in m.counts.items():
        print(f"{key}: {value}")
    print(f"wrote {cfg.out}/metrics.json, transcripts.jsonl")
    return 0


def tn_command(args: argparse.Namespace) -> int:
    from herd.speech.tn import TNConfig, run_tn

    cfg = load_args_config(TNConfig, args)
    print(json.dumps(run_tn(cfg).counts, indent=1))
    print(f"wrote {cfg.out}/metrics.json, predictions.jsonl, tn_classifier.safetensors")
    return 0


def prosody_command(args: argparse.Namespace) -> int:
    from herd.speech.prosody import ProsodyConfig, run_prosody

    cfg = load_args_config(ProsodyConfig, args)
    print(json.dumps(run_prosody(cfg).counts, indent=1))
    print(f"wrote {cfg.out}/metrics.json, targets.jsonl, prosody_model.safetensors, playback_*.wav")
    return 0
