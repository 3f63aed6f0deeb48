"""Run by tests/dist/test_cp_grads.py through torchrun (gloo, 2 ranks): the context-parallel attention's
gradients for q, k and v equal full attention's, for non-contiguous k/v too. gloo's functional
all_gather silently returns wrong gradients for non-contiguous inputs (platform-notes.md), so the
gradients themselves are compared here, not only losses. Exits non-zero with the worst error on failure.
"""

import sys

import torch
import torch.distributed as dist

from herd.model.layers import AttentionKernel, document_mask
from herd.parallel.cp import ContextParallelAttention, chunk_indices

TOL = 1e-12  # float64 attention over 32 keys: reduction-order differences are ~1e-15


def main() -> int:
    dist.init_process_group("gloo")
    rank, cp = dist.get_rank(), dist.get_world_size()
    g = torch.Generator().manual_seed(0)  # every rank draws the same full tensors
    B, H, Hkv, T, D = 2, 4, 2, 32, 8
    q, k, v = (torch.randn(B, h, T, D, generator=g, dtype=torch.float64) for h in (H, Hkv, Hkv))
    weight = torch.randn(B, H, T, D, generator=g, dtype=torch.float64)
    doc_ids = torch.tensor([[0] * 11 + [1] * 21, [0] * 27 + [1] * 5])

    full = [t.clone().requires_grad_() for t in (q, k, v)]
    out = AttentionKernel(mask=document_mask(doc_ids))(*full, layer=0)
    (out * weight).sum().backward()

    idx = chunk_indices(T, cp, rank)
    mine = [t[:, :, idx].clone().requires_grad_() for t in (q, k, v)]
    # k and v as non-contiguous views (transposed storage), the case gloo gets wrong.
    k_nc, v_nc = (t.transpose(2, 3).contiguous().transpose(2, 3) for t in mine[1:])
    assert not k_nc.is_contiguous()
    attn = ContextParallelAttention(dist.group.WORLD, doc_ids, T, cp, rank)
    local = attn(mine[0], k_nc, v_nc, layer=0)
    (local * weight[:, :, idx]).sum().backward()

    errors = {"out": (local - out[:, :, idx]).abs().max().item()}
    for name, a, b in zip("qkv", mine, full):
        errors[f"d{name}"] = (a.grad - b.grad[:, :, idx]).abs().max().item()
    print(f"rank {rank}: " + ", ".join(f"{n} {e:.1e}" for n, e in errors.items()))
    dist.destroy_process_group()
    return 0 if max(errors.values()) <= TOL else 1


if __name__ == "__main__":
    sys.exit(main())
