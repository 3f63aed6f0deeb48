"""herd checkpoints and HF models are scored alike: the same weights in transformers give the same answers."""

import pytest
import torch
from unit.eval.toy import ByteTokenizer, toy_scorer

from herd.eval.scorer import HFScorer
from herd.model.convert import save_hf

transformers = pytest.importorskip("transformers")


class HFByteTokenizer:
    """The toy byte tokenizer behind the slice of the transformers tokenizer API that HFScorer uses."""

    bos_token_id, eos_token_id, pad_token_id = 256, 257, None

    def __init__(self) -> None:
        self.inner = ByteTokenizer()

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": self.inner.encode(text, bos=add_special_tokens)}

    def decode(self, ids) -> str:
        return self.inner.decode(ids)


def test_hf_scorer_matches_herd_scorer(tmp_path) -> None:
    herd = toy_scorer()
    save_hf(herd.model, tmp_path)
    model = transformers.LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    hf = HFScorer(model, HFByteTokenizer())
    assert hf.add_bos and hf.prefix_id == 256
    reqs = [("Question: 1+1?\nAnswer:", " 2"), ("Question: 1+1?\nAnswer:", " three"), ("", "free text")]
    for (a, ga), (b, gb) in zip(herd.loglikelihood(reqs), hf.loglikelihood(reqs)):
        assert a == pytest.approx(b, abs=1e-4) and ga == gb
    assert herd.generate(["abc", "hello"], max_new_tokens=6) == hf.generate(["abc", "hello"], max_new_tokens=6)
