"""On CUDA the document mask runs through flex_attention; it must equal the SDPA boolean-mask path."""

import pytest
import torch
from helpers import tiny_config

from herd.model import build_model
from herd.model.layers import document_causal

pytestmark = pytest.mark.gpu


def _pair(dtype: torch.dtype):
    cfg = tiny_config(dim=256, n_heads=8, n_kv_heads=2, ffn_dim=512, vocab_size=1000)
    flex = build_model(cfg, seed=0, device="cuda").to(dtype)
    sdpa = build_model(tiny_config(dim=256, n_heads=8, n_kv_heads=2, ffn_dim=512, vocab_size=1000, attn_impl="sdpa"),
                       seed=0, device="cuda").to(dtype)  # fmt: skip
    g = torch.Generator(device="cuda").manual_seed(0)
    tokens = torch.randint(0, 1000, (2, 512), device="cuda", generator=g)
    doc_ids = torch.cumsum(torch.rand(2, 512, device="cuda", generator=g) < 0.01, dim=1)  # ~5 documents a row
    return flex, sdpa, tokens, doc_ids


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-4), (torch.bfloat16, 5e-2)])
def test_flex_document_mask_equals_sdpa(dtype: torch.dtype, tol: float) -> None:
    flex, sdpa, tokens, doc_ids = _pair(dtype)
    assert flex.cfg.attn_impl == "auto"  # auto picks flex on CUDA
    out_flex = flex(tokens, *document_causal(doc_ids, flex.cfg.attn_impl))
    out_sdpa = sdpa(tokens, *document_causal(doc_ids, sdpa.cfg.attn_impl))
    # fp32: kernels differ only in summation order. bf16: 8 mantissa bits over logits of magnitude ~1-5.
    assert (out_flex.float() - out_sdpa.float()).abs().max().item() <= tol
    out_flex.float().square().mean().backward()
    out_sdpa.float().square().mean().backward()
    gf, gs = flex.layers["0"].attention.wq.weight.grad, sdpa.layers["0"].attention.wq.weight.grad
    assert torch.allclose(gf.float(), gs.float(), atol=tol, rtol=tol * 10)
