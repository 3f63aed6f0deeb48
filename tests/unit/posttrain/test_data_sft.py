"""Data validation, the golden SFT loss mask, and packing that never lets examples see each other."""

from __future__ import annotations

import json

import pytest
import torch

from herd.model.layers import document_causal
from herd.posttrain.data import DataError, read_dialogs, read_preferences
from herd.posttrain.losses import sft_loss
from herd.posttrain.sft import Example, SFTConfig, collate, encode_dialogs, make_batches, pack


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_preferences_ranked_and_filtered(tmp_path):
    p = [{"role": "user", "content": "q"}]
    rows = [
        {"prompt": p, "edited": "e", "chosen": "c", "rejected": "r", "strength": "significantly_better"},
        {"prompt": p, "chosen": "c", "rejected": "r", "strength": "slightly_better"},
    ]
    prefs = read_preferences(_write(tmp_path / "p.jsonl", rows), ["significantly_better", "better"])
    assert len(prefs) == 1 and prefs[0].responses == ["e", "c", "r"]
    assert len(read_preferences(tmp_path / "p.jsonl")) == 2


@pytest.mark.parametrize(
    "row, message",
    [
        ({"prompt": [{"role": "user", "content": "q"}], "chosen": "c"}, "p.jsonl:2: field 'rejected'"),
        ({"prompt": [{"role": "bot", "content": "q"}], "chosen": "c", "rejected": "r"}, "field 'prompt[0].role'"),
        (
            {"prompt": [{"role": "user", "content": "q"}], "chosen": "c", "rejected": "r", "strength": "meh"},
            "field 'strength'",
        ),
        ("{not json", "p.jsonl:2: invalid JSON"),
    ],
)
def test_bad_preference_rows_name_line_and_field(tmp_path, row, message):
    good = {"prompt": [{"role": "user", "content": "q"}], "chosen": "c", "rejected": "r"}
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_preferences(_write(tmp_path / "p.jsonl", [good, row]))


def test_dialog_without_assistant_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"d.jsonl:1: field 'messages': no assistant"):
        read_dialogs(_write(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}]))


def test_golden_sft_loss_mask(chat, tok):
    """Byte tokenizer: content bytes are token ids, so the expected layout is written out by hand."""
    s = tok.special_ids
    bos, sh, eh, eot = s["<|begin_of_text|>"], s["<|start_header_id|>"], s["<|end_header_id|>"], s["<|eot_id|>"]

    def header(role):
        return [sh, *role.encode(), eh, *b"\n\n"]

    dialog = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "ok?"},
        {"role": "assistant", "content": "ok"},
    ]
    pieces = [
        ([bos], 0), (header("system"), 0), ([*b"S", eot], 0), (header("user"), 0), ([*b"hi", eot], 0),
        (header("assistant"), 0), ([*b"yo", eot], 1), (header("user"), 0), ([*b"ok?", eot], 0),
        (header("assistant"), 0), ([*b"ok", eot], 1),
    ]  # fmt: skip
    tokens, mask = chat.encode_dialog(dialog)
    assert tokens == [t for p, _ in pieces for t in p]
    assert mask == [m for p, m in pieces for _ in p]
    # What the loss sees: the targets under the mask are exactly "yo<eot>" and "ok<eot>".
    ex = encode_dialogs(chat, [dialog], 512)[0]
    b = collate([[ex]])
    trained = b.targets[0][b.loss_mask[0].bool()].tolist()
    assert trained == [*b"yo", eot, *b"ok", eot]


def _examples(chat, n=5):
    dialogs = [
        [{"role": "user", "content": "q" * (i + 1)}, {"role": "assistant", "content": "a" * (3 + i)}] for i in range(n)
    ]
    return encode_dialogs(chat, dialogs, 512)


def test_packed_examples_do_not_attend_to_each_other(chat, model):
    examples = _examples(chat)
    rows = pack(examples, seq_len=200)
    assert len(rows) < len(examples)  # something was actually packed
    packed = collate(rows)
    with torch.no_grad():
        logits = model(packed.inputs, *document_causal(packed.doc_ids))
        for r, row in enumerate(rows):
            at = 0
            for ex in row:
                alone = model(torch.tensor([ex.tokens[:-1]]))[0]
                n = len(ex.tokens) - 1
                torch.testing.assert_close(logits[r, at : at + n], alone, atol=1e-5, rtol=1e-5)
                at += n + 1
    # And the packed loss equals the token-weighted loss of the examples one by one.
    unpacked = collate([[e] for e in examples], packed=False)
    with torch.no_grad():
        a = sft_loss(logits, packed.targets, packed.loss_mask)
        b = sft_loss(model(unpacked.inputs), unpacked.targets, unpacked.loss_mask)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_no_target_crosses_a_document_boundary():
    a, b = Example([1, 2, 3], [0, 1, 1]), Example([4, 5], [1, 1])  # b's first token is trained, but not from a
    batch = collate([[a, b]])
    assert batch.loss_mask[0].tolist() == [1, 1, 0, 1]


def test_sft_default_lr_is_the_papers():
    assert SFTConfig().lr == 1e-5
    assert make_batches([Example([1, 2, 3], [0, 1, 1])], SFTConfig(), 0, 0)[0].inputs.shape == (1, 2)
