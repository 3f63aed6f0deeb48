"""Needle in a haystack: can the model retrieve a fact planted at any depth of a long context? [P §3.4.2]

The haystack is real text (token ids from held-out documents); the needle is a sentence carrying a random
number; the question at the end asks for it, and the probe passes when greedy decoding reproduces the
number at every tested depth. Long-context pretraining stages end only once this passes at their length.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from herd.model import Transformer, generate
from herd.tokenizer import TokenizerLike


@dataclass
class NeedleResult:
    length: int
    depths: list[float]
    found: list[bool]

    @property
    def passed(self) -> bool:
        return all(self.found)


def needle_probe(
    model: Transformer,
    tokenizer: TokenizerLike,
    haystack: Sequence[int],
    length: int,
    depths: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    seed: int = 0,
) -> NeedleResult:
    """Plant "The pass key is N." at each depth of a `length`-token context and ask for N."""
    rng = random.Random(seed)
    found = []
    for depth in depths:
        key = str(rng.randrange(10_000, 100_000))
        needle = tokenizer.encode(f" The pass key is {key}. Remember it. {key} is the pass key. ")
        question = tokenizer.encode(" What is the pass key? The pass key is")
        room = length - len(needle) - len(question) - 1
        if room <= 0:
            raise ValueError(f"needle probe: length {length} is too short for the needle and question")
        if len(haystack) < room:
            raise ValueError(f"needle probe: haystack has {len(haystack)} tokens, {room} needed")
        filler = list(haystack[:room])
        cut = int(depth * room)
        bos = [tokenizer.bos_id] if tokenizer.bos_id is not None else []
        prompt = bos + filler[:cut] + needle + filler[cut:] + question
        out = generate(model, [prompt], max_new_tokens=len(tokenizer.encode(" " + key)) + 1)[0]
        found.append(key in tokenizer.decode(out))
    return NeedleResult(length, list(depths), found)


def haystack_tokens(docs: Sequence[torch.Tensor | Sequence[int]], n: int, drop: set[int]) -> list[int]:
    """At least n tokens of running text from documents, without special tokens (bos/eos) in between."""
    out: list[int] = []
    for d in docs:
        out.extend(int(t) for t in d if int(t) not in drop)
        if len(out) >= n:
            break
    return out
