"""The pretraining loop: exact resume after kill -9, checkpoint fallback, spike guard, learning."""

import json
import os
import signal
import subprocess
import sys
import time

import torch

from herd.core.config import load_config
from herd.core.stage import run_stage
from herd.train.config import PretrainConfig
from herd.train.guard import skip_reason
from herd.train.loop import Trainer
from herd.train.metrics import read_metrics
from herd.train.stage import PretrainStage

FAST = [
    "runtime.peak_flops=1e12", "runtime.tensorboard=false", "schedule.warmup_steps=3", "schedule.total_steps=40",
    "ramp.micro_batch_size=4", "ramp.stages=[{after_tokens=0, batch_tokens=1024, seq_len=128}]",
    "eval.batches=1", "eval.batch_size=4", "optim.lr=3e-3",
]  # fmt: skip


def config(token_dir, run_dir, *extra: str) -> PretrainConfig:
    # The conftest's tokenizer sits beside the shards' folder: named explicitly (data.tokenizer).
    wired = [f"data.shards={token_dir}", f"data.tokenizer={token_dir.parent / 'tok.model'}", f"run_dir={run_dir}"]
    return load_config(PretrainConfig, None, [*wired, *FAST, *extra])


def launch(token_dir, run_dir, *extra: str) -> subprocess.Popen:
    args = [f"data.shards={token_dir}", f"run_dir={run_dir}", *FAST, *extra]
    cmd = [sys.executable, "-m", "herd.cli", "pretrain", "/dev/null", *args]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if r.get("kind") == "train"}


def test_kill_9_and_resume_gives_identical_losses(token_dir, tmp_path) -> None:
    steps = ["schedule.max_steps=16", "checkpoint.every=4", "eval.every=0"]
    straight = launch(token_dir, tmp_path / "a", *steps)
    assert straight.wait(timeout=300) == 0, straight.stderr.read()
    killed = launch(token_dir, tmp_path / "b", *steps)
    deadline = time.time() + 300
    while not (tmp_path / "b" / "checkpoints" / "step-00000008").exists():
        assert killed.poll() is None and time.time() < deadline, "run ended before its step-8 checkpoint"
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "b" / "summary.json").exists() and not (tmp_path / "b" / "MANIFEST.json").exists()
    resumed = launch(token_dir, tmp_path / "b", *steps)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert sorted(a) == list(range(1, 17)) and a == b  # bitwise: JSON floats round-trip exactly
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["resumed"] is True
    assert json.loads((tmp_path / "b" / "MANIFEST.json").read_text())["counts"]["resumed"] is True  # run_stage


def test_corrupt_latest_checkpoint_falls_back_to_previous(token_dir, tmp_path, caplog) -> None:
    t = Trainer(config(token_dir, tmp_path))
    for _ in range(2):
        t.train_step()
        t.save()
    weights = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.train_step()
    t.save()
    latest = t.ckpt.list()[-1]
    blob = next(p for p in latest.iterdir() if p.suffix == ".distcp")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    blob.write_bytes(bytes(data))
    fresh = Trainer(config(token_dir, tmp_path))
    assert fresh.resume() and fresh.state.step == 2
    assert all(torch.equal(weights[k], v) for k, v in fresh.model.state_dict().items())
    assert "step-00000003 is unusable" in caplog.text and "sha256" in caplog.text


def test_half_written_checkpoint_is_ignored(token_dir, tmp_path) -> None:
    t = Trainer(config(token_dir, tmp_path))
    t.train_step()
    t.save()
    (t.ckpt.folder / ".step-00000002.tmp").mkdir()  # a save killed before its rename
    assert [p.name for p in t.ckpt.list()] == ["step-00000001"]


def test_spikes_are_skipped_then_rolled_back(token_dir, tmp_path) -> None:
    t = Trainer(config(token_dir, tmp_path, "guard.max_skips=3", "guard.warmup_steps=2"))
    for _ in range(3):
        t.train_step()
    t.save()
    saved = {k: v.clone() for k, v in t.model.state_dict().items()}
    g = t.cfg.guard
    assert skip_reason(float("nan"), t.state, g) == "nonfinite_loss"
    assert skip_reason(t.state.loss_ema * 10, t.state, g) == "loss_spike"
    assert skip_reason(t.state.loss_ema, t.state, g) is None
    t.train_step()  # one more good step: the weights move past the checkpoint
    t.state.loss_ema = 1e-3  # every real loss now looks like a spike
    before = t.loader.state_dict()["draws"]
    for _ in range(3):
        assert t.train_step()["skipped"] == "loss_spike"
    assert t.state.rollbacks == 1 and t.state.step == 3 and t.state.skipped == 3
    assert all(torch.equal(saved[k], v) for k, v in t.model.state_dict().items())
    assert t.loader.state_dict()["draws"] > before  # the loader moved past the bad data


def test_learns_below_unigram_entropy_and_exports(token_dir, tmp_path) -> None:
    cfg = config(
        token_dir,
        tmp_path,
        "schedule.max_steps=100",
        "schedule.total_steps=100",
        "optim.lr=1e-2",
        "ramp.stages=[{after_tokens=0, batch_tokens=2048, seq_len=128}]",
        "eval.every=50",
        "anneal.tokens=4096",
        "anneal.checkpoints=2",
    )
    manifest = run_stage(PretrainStage(cfg))
    summary = manifest.counts  # the stage's numbers are the manifest's counts
    print(f"held-out {summary['held_out_loss_last']:.3f} vs unigram entropy {summary['unigram_entropy']:.3f}")
    assert summary["held_out_loss_last"] < summary["unigram_entropy"] - 0.3
    assert summary["averaged_snapshots"] == [101, 102] and summary["held_out_loss_averaged"] is not None
    summary_json = json.loads((tmp_path / "summary.json").read_text())
    assert {k: summary[k] for k in summary_json} == summary_json  # plus the curves the run report renders
    assert len(summary["curve"]["tokens"]) == 102 and [m[1] for m in summary["boundaries"]] == ["anneal starts"]
    from herd.model import load_model

    for export in ("final", "base"):
        model = load_model(tmp_path / export)
        assert (tmp_path / export / "tokenizer.model").is_file() and model.cfg.vocab_size == 1024
    assert (tmp_path / "loss.png").stat().st_size > 10_000
    assert (tmp_path / "config.resolved.toml").is_file()
    written = json.loads((tmp_path / "MANIFEST.json").read_text())
    assert written["stage"] == "pretrain" and written["counts"]["steps"] == 102
    assert written["inputs"][0]["manifest"] is not None  # lineage: the token shards' own manifest
    assert written["inputs"][1]["path"] == cfg.data.tokenizer  # the tokenizer is an input too
    assert run_stage(PretrainStage(cfg)).created == manifest.created  # same key: the runner skips it


def test_long_context_stage_gates_and_rope(token_dir, tmp_path) -> None:
    stage = "long_context=[{seq_len=256, tokens=4096, max_tokens=8192, rope_theta=1000000.0, loss_tolerance=0.5}]"
    t = Trainer(config(token_dir, tmp_path, "schedule.max_steps=6", "eval.every=2", stage))
    summary = t.fit()
    (result,) = summary["long_context"]
    # A 2-layer model cannot retrieve a needle, so the stage ran to its cap and says it did not pass.
    assert result["seq_len"] == 256 and result["tokens"] == 8192 and result["passed"] is False
    assert result["needle"] is not None and not all(result["needle"])
    assert t.model.cfg.rope_theta == 1_000_000.0 and t.model.cfg.max_seq_len >= 256
    from herd.model import load_model

    assert load_model(tmp_path / "base").cfg.rope_theta == 1_000_000.0
    records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r.get("kind") == "train"]
    assert {r["seq_len"] for r in records if r["phase"] == "long"} == {256}


def test_a_persistent_fault_rolls_back_a_bounded_number_of_times_then_fails(token_dir, tmp_path, monkeypatch) -> None:
    """Issue 16: a loss that never recovers once rolled back to the same checkpoint forever. Now each
    checkpoint is tried `guard.max_rollbacks` times, then the one before it, then one line with the count."""
    import pytest

    from herd.core.stage import StageFailed
    from herd.train import guard

    t = Trainer(config(token_dir, tmp_path, "guard.max_skips=2", "guard.max_rollbacks=2", "checkpoint.keep=3"))
    for _ in range(2):
        t.train_step()
        t.save()  # checkpoints at steps 1 and 2
    monkeypatch.setattr(guard, "skip_reason", lambda loss, s, g: "nonfinite_loss")  # a fault that never clears
    steps = 0
    with pytest.raises(StageFailed) as e:  # the CLI prints it as one line
        while steps < 100:
            t.train_step()
            steps += 1
    message = str(e.value)
    assert "\n" not in message and "4 rollbacks" in message and "guard.max_rollbacks=2" in message
    assert t.state.rollbacks == 4 and steps == 5 * 2 - 1  # 2 skips per rollback; the 5th rollback fails


def test_a_planted_metadata_pickle_does_not_run_on_resume(token_dir, tmp_path) -> None:
    """Issue 16: DCP reads `.metadata` with pickle. A crafted one with matching CHECKSUMS.json ran code on
    `herd pretrain`; now it is refused by a restricted unpickler, with one line naming the file."""
    import hashlib
    import pickle

    import pytest

    t = Trainer(config(token_dir, tmp_path / "run"))
    t.train_step()
    ckpt = t.save() or sorted((tmp_path / "run" / "checkpoints").glob("step-*"))[-1]
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    meta = ckpt / ".metadata"
    meta.write_bytes(pickle.dumps(Payload()))
    sums = json.loads((ckpt / "CHECKSUMS.json").read_text())
    sums[".metadata"] = {"size": meta.stat().st_size, "sha256": hashlib.sha256(meta.read_bytes()).hexdigest()}
    (ckpt / "CHECKSUMS.json").write_text(json.dumps(sums))
    with pytest.raises(ValueError, match=r"\.metadata: not a DCP checkpoint's metadata \(builtins\.exec") as e:
        Trainer(config(token_dir, tmp_path / "run")).resume()
    assert "\n" not in str(e.value) and not marker.exists()


def test_every_checkpoint_unusable_stops_instead_of_starting_over(token_dir, tmp_path) -> None:
    """Issue 16: with every checkpoint corrupt, training restarted from step 0 and overwrote them."""
    import pytest

    from herd.core.stage import StageFailed

    t = Trainer(config(token_dir, tmp_path))
    t.train_step()
    t.save()
    for f in (tmp_path / "checkpoints").glob("step-*/*.distcp"):
        f.write_bytes(f.read_bytes()[:10])  # truncated: its size no longer matches CHECKSUMS.json
    with pytest.raises(StageFailed, match=r"checkpoint\.start_over=true") as e:
        Trainer(config(token_dir, tmp_path)).resume()
    assert "\n" not in str(e.value)
    assert Trainer(config(token_dir, tmp_path, "checkpoint.start_over=true")).resume() is False  # asked for


def test_pruning_keeps_the_last_trustworthy_checkpoint(token_dir, tmp_path) -> None:
    """Issue 16: pruning by name deleted good checkpoints and kept corrupt ones. Now the newest `keep`
    usable checkpoints stay and unusable ones go."""
    t = Trainer(config(token_dir, tmp_path, "checkpoint.keep=2"))
    for _ in range(3):
        t.train_step()
        t.save()
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.glob("step-*")) == ["step-00000002", "step-00000003"]
    for f in (folder / "step-00000003").glob("*.distcp"):
        f.write_bytes(f.read_bytes()[:10])
    assert "bytes, expected" in t.ckpt.problem(folder / "step-00000003")
    (folder / "step-00000003" / "CHECKSUMS.json").write_text("[1, 2]")  # a wrong-shaped file: one line too
    assert t.ckpt.problem(folder / "step-00000003") == "CHECKSUMS.json is not {file: {size, sha256}}"
    t.train_step()
    t.save()  # step 4: by name, 2 would go and the corrupt 3 stay
    assert sorted(p.name for p in folder.glob("step-*")) == ["step-00000002", "step-00000004"]
