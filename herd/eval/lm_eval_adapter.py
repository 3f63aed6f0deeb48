"""lm-evaluation-harness runs herd models: an `lm_eval` LM backed by a herd Scorer.

    import lm_eval
    from herd.eval.lm_eval_adapter import HerdLM
    lm_eval.simple_evaluate(model=HerdLM(pretrained="smollm2"), tasks=[...], task_manager=...)

or, once this module is imported, `model="herd", model_args="pretrained=path/to/checkpoint"`.
This module imports lm_eval at import time (it subclasses its LM); nothing else in herd imports it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

# lm-eval fills its model registry lazily, only while the registry is empty: registering "herd" first would
# leave it holding "herd" alone ("no model for this name found!" for "hf"). Its own models go in first.
import lm_eval.models  # noqa: F401  (registers lm-eval's own models)
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from herd.eval.scorer import Scorer, load_scorer


@register_model("herd")
class HerdLM(LM):
    """loglikelihood, loglikelihood_rolling and generate_until answered by a herd Scorer."""

    def __init__(
        self,
        pretrained: str = "smollm2",
        backend: str = "herd",
        tokenizer: str | None = None,
        device: str = "cpu",
        dtype: str = "fp32",
        batch_tokens: int = 4096,
        max_gen_toks: int = 256,
        scorer: Scorer | None = None,
        **_: Any,
    ) -> None:
        super().__init__()
        self.scorer = scorer or load_scorer(
            pretrained, backend=backend, tokenizer=tokenizer, device=device, dtype=dtype, batch_tokens=int(batch_tokens)
        )
        self.max_gen_toks = int(max_gen_toks)

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        results = self.scorer.loglikelihood([tuple(r.args) for r in requests])
        for r, res in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", r.args, res)
        return results

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        results = self.scorer.loglikelihood_rolling([r.args[0] for r in requests])
        for r, res in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood_rolling", r.args, res)
        return results

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        # Requests with the same generation settings are generated together (batched).
        groups: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[repr(sorted(_gen_kwargs(r).items()))].append(i)
        out = [""] * len(requests)
        for idx in groups.values():
            kw = _gen_kwargs(requests[idx[0]])
            until = kw.get("until") or []
            texts = self.scorer.generate(
                [requests[i].args[0] for i in idx],
                max_new_tokens=int(kw.get("max_gen_toks", self.max_gen_toks)),
                stop=[until] if isinstance(until, str) else list(until),
                temperature=float(kw.get("temperature", 0.0)) if kw.get("do_sample") else 0.0,
                top_p=float(kw.get("top_p", 1.0)),
            )
            for i, t in zip(idx, texts):
                out[i] = t
                self.cache_hook.add_partial("generate_until", requests[i].args, t)
        return out


def _gen_kwargs(request: Any) -> dict[str, Any]:
    args = request.args
    return dict(args[1]) if len(args) > 1 and args[1] else {}
