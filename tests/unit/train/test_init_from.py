"""Continued pretraining (`model.init_from`): the trainer starts from existing weights exactly, so its
step-0 loss is the loaded model's loss on the same batch, and its logits are the reference's."""

import pytest
import torch
import torch.nn.functional as F

from herd.core.config import ConfigError
from herd.data.loader import IGNORE_INDEX
from herd.model import document_causal, load_model
from herd.train.loop import Trainer
from tests.unit.train.test_trainer import config

transformers = pytest.importorskip("transformers")


def loss_on(model: torch.nn.Module, batch) -> float:
    """Mean next-token loss of one packed batch, documents masked from each other, by hand."""
    positions, attention = document_causal(batch.doc_ids)
    with torch.no_grad():
        logits = model(batch.tokens, positions=positions, attention=attention)
    return F.cross_entropy(logits.flatten(0, 1).float(), batch.labels.flatten(), ignore_index=IGNORE_INDEX).item()


def first_step_matches(t: Trainer, reference: torch.nn.Module) -> None:
    state = t.loader.state_dict()
    batch = t.loader.next_batch(1024 // 128, 128)  # the FAST ramp's one batch shape
    t.loader.load_state_dict(state)
    want = loss_on(reference, batch)
    got = t.train_step()["loss"]
    # fp32: the step sums two micro-batches' losses, the reference takes the batch at once (~1e-7 apart).
    assert abs(got - want) <= 1e-5 * want, (got, want)


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A small Llama written by transformers itself (config.json and safetensors as HF saves them)."""
    cfg = transformers.LlamaConfig(
        vocab_size=1100, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, rope_theta=500000.0, tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf")
    transformers.LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


def test_init_from_an_hf_folder_starts_from_its_weights(token_dir, tmp_path, hf_folder) -> None:
    t = Trainer(config(token_dir, tmp_path, f"model.init_from={hf_folder}"))
    assert (t.model_cfg.dim, t.model_cfg.n_layers, t.model_cfg.vocab_size) == (64, 2, 1100)
    hf = transformers.LlamaForCausalLM.from_pretrained(hf_folder, attn_implementation="eager").eval()
    tokens = torch.randint(0, 1024, (2, 96), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (t.model(tokens) - hf(tokens).logits).abs().max().item() <= 1e-5  # fp32, reordered sums
    first_step_matches(t, load_model(hf_folder, dtype=torch.float32))


def test_init_from_a_gguf_file(token_dir, tmp_path, smollm2_gguf) -> None:
    t = Trainer(config(token_dir, tmp_path, f"model.init_from={smollm2_gguf}", "ramp.micro_batch_size=8"))
    assert t.model_cfg.vocab_size == 49152 and t.model_cfg.n_layers == 30
    first_step_matches(t, load_model(smollm2_gguf, dtype=torch.float32))


def test_init_from_refuses_shape_keys_and_a_small_vocabulary(token_dir, tmp_path, hf_folder) -> None:
    with pytest.raises(ConfigError, match=r"model\.dim=128: model\.init_from=\S+ has dim=64 "):
        Trainer(config(token_dir, tmp_path, f"model.init_from={hf_folder}", "model.dim=128"))
    with pytest.raises(ConfigError, match=r"model\.init_from=\S*nope: not found$"):
        Trainer(config(token_dir, tmp_path, f"model.init_from={tmp_path / 'nope'}"))


def test_init_from_under_tp_and_pp_matches_one_process(token_dir, tmp_path, hf_folder) -> None:
    """Sharded (TP) and split (PP) models take their part of the loaded weights: same losses as one process."""
    from helpers import assert_same_losses, pretrain_losses

    init = [f"model.init_from={hf_folder}", "schedule.max_steps=3"]  # the parity settings' heads are its own
    one = pretrain_losses(token_dir, tmp_path / "one", 1, *init)
    tp = pretrain_losses(token_dir, tmp_path / "tp", 2, *init, "parallel.tp=2", "parallel.dp_shard=1")
    pp = pretrain_losses(token_dir, tmp_path / "pp", 2, *init, "parallel.pp=2", "parallel.dp_shard=1")
    assert_same_losses(tp, one)
    assert_same_losses(pp, one)


def test_an_hf_vocabulary_beside_the_shards_is_found_and_exported(tmp_path) -> None:
    """Shards tokenized with an HF/GGUF vocabulary carry tokenizer.json (+ its config): the run exports both."""
    from herd.train.config import DataSection, tokenizer_file
    from herd.train.finish import export_tokenizer

    shards, export = tmp_path / "tokens", tmp_path / "final"
    shards.mkdir()
    export.mkdir()
    (shards / "tokenizer.json").write_text('{"model": {}}')
    (shards / "tokenizer_config.json").write_text('{"chat_template": "x"}')
    found = tokenizer_file(DataSection(shards=str(shards)))
    assert found == shards / "tokenizer.json"
    assert tokenizer_file(DataSection(shards="unused", tokenizer=str(shards))) == found  # a folder names it too
    export_tokenizer(found, export)
    assert sorted(p.name for p in export.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
