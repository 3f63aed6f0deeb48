"""herd.judge: a chat model as a one-digit judge, for curation [P §3.1.1] and post-training [P §4.2.3].

    from herd.judge import load_judge
    judge = load_judge("smollm2")                        # model + its own tokenizer and chat format
    judge.label("quality", texts, 3)                     # curation: documents (herd.data.quality.DocumentJudge)
    judge.quality(rows, code); judge.intentions(rows)    # post-training pruning (herd.posttrain.data_quality.Judge)

It sits above herd.model, herd.data and herd.tokenizer (and beside herd.parallel): it loads the model,
and `curate` hands the judge to herd.data's pipeline, which only sees the `DocumentJudge` protocol.
"""

from herd.judge.curation import curate, curation_judge
from herd.judge.lm import LMJudge, load_judge
from herd.judge.scoring import digit_probs, expected_digit, rank_bins

__all__ = ["LMJudge", "curate", "curation_judge", "digit_probs", "expected_digit", "load_judge", "rank_bins"]
