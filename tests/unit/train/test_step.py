"""TrainStep's pieces without a model: the scoped loss factor, rows per rank, micro-batches."""

import pytest
import torch

from herd.data.loader import IGNORE_INDEX, Batch
from herd.parallel.dims import ParallelConfig
from herd.parallel.parallelize import ParallelContext
from herd.train.step import ScaledLoss, local_rows, micro_batches, summed_token_loss


def batch(rows: int, seq: int = 4) -> Batch:
    tokens = torch.arange(rows * seq).view(rows, seq)
    return Batch(tokens, tokens + 1, torch.zeros_like(tokens))


def test_loss_factor_holds_only_inside_its_block() -> None:
    logits, labels = torch.randn(2, 3, 5), torch.tensor([[1, 2, IGNORE_INDEX], [0, 4, 3]])
    loss = ScaledLoss(summed_token_loss)
    plain = loss(logits, labels)
    with loss.scaled(0.25):
        assert torch.equal(loss(logits, labels), plain * 0.25)
    assert torch.equal(loss(logits, labels), plain * 1.0)
    with pytest.raises(RuntimeError), loss.scaled(4.0):
        raise RuntimeError("a failed pipeline step")
    assert torch.equal(loss(logits, labels), plain)  # reset even when the step failed


def test_summed_token_loss_skips_ignored_labels() -> None:
    logits, labels = torch.randn(1, 3, 5), torch.tensor([[1, IGNORE_INDEX, 3]])
    want = torch.nn.functional.cross_entropy(logits[0, [0, 2]], labels[0, [0, 2]], reduction="sum")
    assert torch.allclose(summed_token_loss(logits, labels), want)


def test_one_process_takes_every_row_in_micro_batches() -> None:
    par = ParallelContext(ParallelConfig(), "cpu")
    full = batch(6)
    assert torch.equal(local_rows(full, par).tokens, full.tokens)
    parts = micro_batches(full, 4)
    assert [p.tokens.shape[0] for p in parts] == [4, 2]
    assert torch.equal(torch.cat([p.labels for p in parts]), full.labels)
