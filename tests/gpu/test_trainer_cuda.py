"""`herd pretrain` on CUDA: bf16 autocast, compiled blocks and the flex document mask train the same
model the CPU fp32 run trains, and an exported checkpoint loads and generates on the GPU."""

import pytest

from herd.core.config import load_config
from herd.train.config import PretrainConfig
from herd.train.loop import Trainer
from herd.train.metrics import read_metrics

pytestmark = pytest.mark.gpu

BASE = [
    "runtime.tensorboard=false", "schedule.warmup_steps=3", "schedule.total_steps=30", "schedule.max_steps=30",
    "ramp.micro_batch_size=4", "ramp.stages=[{after_tokens=0, batch_tokens=2048, seq_len=256}]",
    "eval.every=30", "eval.batches=2", "eval.batch_size=4", "optim.lr=3e-3", "anneal.tokens=0",
]  # fmt: skip


def _run(token_dir, run_dir, *extra: str) -> dict[int, float]:
    cfg = load_config(PretrainConfig, None, [f"data.shards={token_dir}", f"run_dir={run_dir}", *BASE, *extra])
    Trainer(cfg).fit()
    return {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if r.get("kind") == "train"}


def test_cuda_bf16_compiled_training_tracks_cpu_fp32(token_dir, tmp_path) -> None:
    cpu = _run(token_dir, tmp_path / "cpu", "runtime.device=cpu", "runtime.dtype=fp32")
    gpu = _run(token_dir, tmp_path / "gpu", "runtime.device=cuda", "runtime.dtype=bf16", "runtime.compile=true")
    assert sorted(cpu) == sorted(gpu)
    # Step 1 sees identical weights and data: only bf16 rounding of activations separates the losses
    # (~3 significant digits). Later steps compound it, but the curves must stay together.
    assert abs(gpu[1] - cpu[1]) / cpu[1] < 5e-3
    last = max(cpu)
    assert abs(gpu[last] - cpu[last]) / cpu[last] < 0.05 and gpu[last] < gpu[1] - 1.0


def test_cuda_flex_and_sdpa_trainers_agree(token_dir, tmp_path) -> None:
    """The flex_attention document mask (CUDA default) against the dense SDPA mask, in fp32."""
    flex = _run(token_dir, tmp_path / "flex", "runtime.device=cuda", "runtime.dtype=fp32", "model.attn_impl=flex")
    sdpa = _run(token_dir, tmp_path / "sdpa", "runtime.device=cuda", "runtime.dtype=fp32", "model.attn_impl=sdpa")
    for step in flex:
        assert abs(flex[step] - sdpa[step]) <= 1e-4 * abs(sdpa[step]), step


def test_cuda_export_loads_and_generates(token_dir, tmp_path) -> None:
    from herd.model import generate, load_model

    _run(token_dir, tmp_path, "runtime.device=cuda", "runtime.dtype=bf16")
    model = load_model(tmp_path / "final").to("cuda")
    cpu_model = load_model(tmp_path / "final")
    prompts = [[1, 2, 3, 4], [5, 6]]
    # Greedy decoding in fp32 from the same weights: the GPU and CPU pick the same tokens.
    assert generate(model, prompts, max_new_tokens=8) == generate(cpu_model, prompts, max_new_tokens=8)
