"""Pretraining faults a user meets (issue 16): bad shards, a changed model on resume, a rollback across
a phase boundary, redone steps in the metrics, and checkpoint folders made durable."""

import json
import shutil

import pytest
import torch

from herd.cli.main import main
from herd.core.config import ConfigError
from herd.core.stage import StageFailed
from herd.data.loader import MixSchedule
from herd.data.shards import HEADER, TokenShard
from herd.train import checkpoint as checkpoint_module
from herd.train.loop import Trainer
from tests.unit.train.test_trainer import config


def _copy_shards(token_dir, tmp_path):
    shards = tmp_path / "tokens"
    shutil.copytree(token_dir, shards)
    return shards


def test_token_ids_beyond_the_shard_vocab_name_the_shard(token_dir, tmp_path) -> None:
    shards = _copy_shards(token_dir, tmp_path)
    shard = sorted(shards.glob("*/train/*.bin"))[0]
    raw = bytearray(shard.read_bytes())
    fields = list(HEADER.unpack(raw[: HEADER.size]))
    top = int(TokenShard(shard).tokens.max())
    fields[5] = top  # the header's vocab_size now excludes the largest id the shard holds
    raw[: HEADER.size] = HEADER.pack(*fields)
    shard.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=rf"{shard}: token id {top} .* vocab_size {top}"):
        Trainer(config(token_dir, tmp_path / "run", f"data.shards={shards}"))


def test_the_cli_says_a_bad_shard_in_one_line(token_dir, tmp_path, capsys) -> None:
    shards = _copy_shards(token_dir, tmp_path)
    shard = sorted(shards.glob("*/train/*.bin"))[0]
    raw = bytearray(shard.read_bytes())
    fields = list(HEADER.unpack(raw[: HEADER.size]))
    fields[5] = 10  # vocab_size 10: the shard's ids (up to ~1,000) are outside it
    raw[: HEADER.size] = HEADER.pack(*fields)
    shard.write_bytes(bytes(raw))
    args = [f"data.shards={shards}", f"run_dir={tmp_path / 'run'}", "runtime.peak_flops=1e12", "schedule.max_steps=1"]
    assert main(["pretrain", "/dev/null", *args]) == 2  # a usage error, as argparse
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("herd pretrain: error:")]
    assert f"{shard}: token id" in line and "vocab_size 10" in line and "Traceback" not in err


def test_a_model_vocabulary_smaller_than_the_shards_names_the_key(token_dir, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"model\.vocab_size=100 .* 1024"):
        Trainer(config(token_dir, tmp_path / "run", "model.vocab_size=100"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["file", "missing", "empty"])
def test_bad_data_shards_names_the_key_and_creates_nothing(token_dir, tmp_path, kind) -> None:
    target = {"file": next(token_dir.glob("*/train/*.bin")), "missing": tmp_path / "nope", "empty": tmp_path}[kind]
    with pytest.raises(ConfigError, match=rf"data\.shards={target}: "):
        Trainer(config(token_dir, tmp_path / "run", f"data.shards={target}"))
    assert not (tmp_path / "run").exists()


def test_resuming_with_another_model_shape_fails_before_writing(token_dir, tmp_path) -> None:
    t = Trainer(config(token_dir, tmp_path))
    t.train_step()
    t.save()
    resolved = (tmp_path / "config.resolved.toml").read_text()
    with pytest.raises(StageFailed, match=r"model\.n_layers: checkpoint 2, config 3"):
        Trainer(config(token_dir, tmp_path, "model.n_layers=3"))
    assert (tmp_path / "config.resolved.toml").read_text() == resolved


def test_a_rollback_across_a_phase_boundary_restores_rope_and_mix(token_dir, tmp_path) -> None:
    long_stage = "long_context=[{seq_len=256, tokens=512, max_tokens=512, rope_theta=1000000.0}]"
    mix = "anneal.mix={code=1.0}"
    t = Trainer(config(token_dir, tmp_path, "schedule.max_steps=2", long_stage, "anneal.tokens=4096", mix))
    main_rope, main_mix = t.model_cfg, t.loader.mix
    t.train_step()
    t._advance_phase()
    t.save()  # step 1, main pretraining
    while t.state.phase != "anneal":  # step 2 ends main pretraining; the long-context stage; annealing
        t.train_step()
        t._advance_phase()
    assert t.model.cfg.rope_theta == 1_000_000.0 and t.loader.mix != main_mix
    t._rollback()
    assert (
        t.state.step == 1
        and t.state.phase == "main"
        and t.model_cfg == main_rope
        and t.model.cfg.rope_theta == main_rope.rope_theta
    )
    assert isinstance(t.loader.mix, MixSchedule) and t.loader.mix == main_mix
    fresh = Trainer(config(token_dir, tmp_path / "other"))
    assert torch.equal(t.model.inv_freq, fresh.model.inv_freq)  # the RoPE frequencies themselves


def test_redone_steps_appear_once_in_metrics_and_tensorboard(token_dir, tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps = ["checkpoint.every=4", "eval.every=3", "runtime.tensorboard=true"]  # step 6: eval and last step
    Trainer(config(token_dir, tmp_path, "schedule.max_steps=6", *steps)).fit()
    shutil.rmtree(tmp_path / "checkpoints" / "step-00000006")  # the last save lost: steps 5 and 6 are redone
    Trainer(config(token_dir, tmp_path, "schedule.max_steps=6", *steps)).fit()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    keys = [(r.get("kind"), r["step"]) for r in map(json.loads, lines)]
    assert len(keys) == len(set(keys)) and ("train", 6) in keys
    events = EventAccumulator(str(tmp_path / "tensorboard"))  # reads as TensorBoard does
    events.Reload()
    loss_steps = [e.step for e in events.Scalars("train/loss")]
    assert sorted(loss_steps) == list(range(1, 7))


def test_a_checkpoint_folder_is_fsynced_after_its_rename(token_dir, tmp_path, monkeypatch) -> None:
    synced = []
    real = checkpoint_module.fsync_dir

    def record(folder):
        synced.append((folder, sorted(p.name for p in folder.iterdir())))
        real(folder)

    monkeypatch.setattr(checkpoint_module, "fsync_dir", record)
    t = Trainer(config(token_dir, tmp_path))
    t.train_step()
    t.save()
    assert (tmp_path / "checkpoints", ["step-00000001"]) in synced  # the rename itself is durable
