"""Run by test_pp_infer.py under torchrun: pipeline-parallel greedy generation vs one process, printed as JSON."""

import json
import sys

import torch.distributed as dist

from herd.model import build_model, generate
from herd.parallel.pp_infer import pipeline_generate, pipeline_stage
from tests.helpers import tiny_config


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    tied = sys.argv[1] == "tied"
    cfg = tiny_config(n_layers=5, tied=tied)
    model = build_model(cfg, seed=0).eval()  # the same weights on every rank
    prompts = [[5, 9, 2, 7, 1], [3, 1], [8, 8, 8, 8, 8, 8, 1], [4], [6, 2, 2]]
    stop = generate(model, prompts[:1], max_new_tokens=6)[0][5]  # a token row 0 makes: it ends that row early
    want = generate(model, prompts, max_new_tokens=12, stop_ids=[stop]) if rank == 0 else None
    stage, layers = pipeline_stage(model, rank, world)
    got = pipeline_generate(stage, prompts, 12, micro_batches=3, stop_ids=[stop])
    print(json.dumps({"rank": rank, "layers": layers, "has_embedding": stage.tok_embeddings is not None}))
    if rank == 0:
        print(json.dumps({"same": got == want, "got": got, "want": want}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
