"""The end of pretraining: annealing snapshots and their Polyak average (the base model) [P §3.4.3], HF
exports with the tokenizer beside them, summary.json and the loss plot. Rank 0 alone calls these; the
stage runner (herd.core.stage.run_stage) writes MANIFEST.json from the numbers `finish` returns."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch import Tensor, nn

from herd.core.io import atomic_write_text
from herd.data.shards import TokenShard
from herd.model import Transformer
from herd.model.config import ModelConfig
from herd.model.convert import build_from_state_dict, save_hf
from herd.train.averaging import average_state_dicts
from herd.train.metrics import plot_run
from herd.train.phases import TrainState

SNAPSHOTS = "anneal"  # run_dir/anneal/step-XXXXXXXX.safetensors: model weights only


def snapshot_path(run_dir: Path, step: int) -> Path:
    return run_dir / SNAPSHOTS / f"step-{step:08d}.safetensors"


def save_snapshot(run_dir: Path, step: int, weights: dict[str, Tensor]) -> None:
    from safetensors.torch import save_file

    path = snapshot_path(run_dir, step)
    path.parent.mkdir(exist_ok=True)
    save_file(weights, str(path))


def snapshot_model(model_cfg: ModelConfig, run_dir: Path, step: int) -> Transformer:
    from safetensors.torch import load_file

    return build_from_state_dict(model_cfg, load_file(str(snapshot_path(run_dir, step))), "snapshot")


def average_snapshots(model_cfg: ModelConfig, run_dir: Path, steps: list[int]) -> Transformer:
    """The Polyak average of the annealing snapshots: the base model [P §3.4.3]."""
    from safetensors.torch import load_file

    states = [load_file(str(snapshot_path(run_dir, s))) for s in steps]
    return build_from_state_dict(model_cfg, average_state_dicts(states), "averaged snapshots")


def unigram_entropy(sources: dict[str, list[Path]]) -> float:
    """Entropy (nats/token) of the training tokens' unigram distribution: the loss of a model that
    learned token frequencies and nothing else."""
    shards = [TokenShard(p) for paths in sources.values() for p in paths]
    counts = np.zeros(max(s.vocab_size for s in shards), dtype=np.int64)
    for shard in shards:
        counts += np.bincount(np.asarray(shard.tokens, dtype=np.int64), minlength=len(counts))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def finish(
    run_dir: Path,
    model_cfg: ModelConfig,
    state: TrainState,
    weights: dict[str, Tensor],
    held_out_loss: Callable[[nn.Module], float | None],
    summary: dict,
    boundaries: dict[str, int],
    tokenizer: Path | None,
) -> dict:
    """Export the final weights (`final/`) and the base model (`base/`: the average of the annealing
    snapshots, or the final weights without annealing), each with the tokenizer beside it so `herd
    generate DIR` works; write summary.json (`summary` plus the snapshots' held-out losses) and loss.png.
    Returns the summary."""
    save_hf(build_from_state_dict(model_cfg, weights, "final weights"), run_dir / "final")
    summary = dict(summary)
    base = run_dir / "base"
    if state.anneal_snapshots:
        averaged = average_snapshots(model_cfg, run_dir, state.anneal_snapshots)
        summary["held_out_loss_averaged"] = held_out_loss(averaged)
        snapshots = [held_out_loss(snapshot_model(model_cfg, run_dir, s)) for s in state.anneal_snapshots]
        summary["held_out_loss_snapshots"] = snapshots
        summary["held_out_loss_last_snapshot"] = snapshots[-1]
        summary["averaged_snapshots"] = state.anneal_snapshots
        save_hf(averaged, base)
    else:
        shutil.copytree(run_dir / "final", base, dirs_exist_ok=True)
    if tokenizer is not None:
        for export in (run_dir / "final", base):
            export_tokenizer(tokenizer, export)
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    plot_run(run_dir, boundaries)
    return summary


def export_tokenizer(tokenizer: Path, export: Path) -> None:
    """Beside exported weights: a ranks file as `tokenizer.model`; an HF `tokenizer.json` as itself, with
    its `tokenizer_config.json` (chat template, special tokens) when one sits beside it."""
    if tokenizer.name != "tokenizer.json":
        shutil.copyfile(tokenizer, export / "tokenizer.model")
        return
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (tokenizer.parent / name).is_file():
            shutil.copyfile(tokenizer.parent / name, export / name)
