"""Answer metrics of the reading-comprehension and open-QA benchmarks, as lm-evaluation-harness 0.4.13 scores
them (its task definitions drop, coqa, nq_open, triviaqa), and SQuAD v1.1's official EM/F1.

Each scorer takes the model's raw generation and the example's gold answers and returns per-example metrics
in [0, 1]; the harness averages them and puts a 95% CI on the mean [P §5].
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

# ------------------------------------------------------------------------------------------------ SQuAD / CoQA

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = frozenset(string.punctuation)


def squad_normalize(text: str) -> str:
    """SQuAD's answer normalization: lower case, no ASCII punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_exact(pred: str, gold: str) -> float:
    return float(squad_normalize(pred) == squad_normalize(gold))


def squad_f1(pred: str, gold: str) -> float:
    """Token-overlap F1 of the normalized answers; an empty side scores 1 only if both are empty."""
    p, g = squad_normalize(pred).split(), squad_normalize(gold).split()
    if not p or not g:
        return float(p == g)
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def squad_scores(output: str, golds: Sequence[str]) -> dict[str, float]:
    """SQuAD v1.1: the best EM and F1 over the gold answers (the answer is the first line generated)."""
    pred = output.strip().split("\n")[0]
    return {"em": max(squad_exact(pred, g) for g in golds), "f1": max(squad_f1(pred, g) for g in golds)}


def coqa_scores(output: str, golds: Sequence[str]) -> dict[str, float]:
    """CoQA (lm-eval's coqa): with several gold answers, each is left out in turn and the best EM/F1 against
    the others is averaged (so a human answer is scored like a model's)."""
    pred = output.strip().split("\n")[0]
    if len(golds) == 1:
        return {"em": squad_exact(pred, golds[0]), "f1": squad_f1(pred, golds[0])}
    em = f1 = 0.0
    for i in range(len(golds)):
        rest = [*golds[:i], *golds[i + 1 :]]
        em += max(squad_exact(pred, g) for g in rest)
        f1 += max(squad_f1(pred, g) for g in rest)
    return {"em": em / len(golds), "f1": f1 / len(golds)}


# ------------------------------------------------------------------------------------------------ DROP


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _drop_token(token: str) -> str:
    """One whitespace/hyphen token: lower, punctuation off unless numeric, numbers as floats, no articles."""
    t = token.lower()
    if not _is_number(t):
        t = "".join(ch for ch in t if ch not in _PUNCT)
    if _is_number(t):
        t = str(float(t))  # "2" and "2.0" compare equal
    return " ".join(_ARTICLES.sub(" ", t).split())


def drop_normalize(span: str) -> str:
    return " ".join(t for t in (_drop_token(tok) for tok in re.split(" |-", span)) if t.strip()).strip()


def _bag_f1(pred: set[str], gold: set[str]) -> float:
    common = len(pred & gold)
    precision = common / len(pred) if pred else 1.0
    recall = common / len(gold) if gold else 1.0
    return 0.0 if precision == recall == 0.0 else 2 * precision * recall / (precision + recall)


def _numbers_agree(gold: set[str], pred: set[str]) -> bool:
    """A gold span with numbers in it only credits a predicted span sharing one of them."""
    gold_nums = {w for w in gold if _is_number(w)}
    return not gold_nums or bool(gold_nums & {w for w in pred if _is_number(w)})


def drop_em_f1(pred_spans: Sequence[str], gold_spans: Sequence[str]) -> tuple[float, float]:
    """DROP's metric for one gold answer: EM over the sets of normalized spans; F1 from the best one-to-one
    alignment of predicted and gold spans (Hungarian matching), averaged over the larger side, 2 decimals."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    pred_norm = [drop_normalize(s) for s in pred_spans]
    gold_norm = [drop_normalize(s) for s in gold_spans]
    em = float(set(pred_norm) == set(gold_norm) and len(pred_norm) == len(gold_norm))
    pred_bags, gold_bags = [set(s.split()) for s in pred_norm], [set(s.split()) for s in gold_norm]
    scores = np.zeros((len(gold_bags), len(pred_bags)))
    for i, g in enumerate(gold_bags):
        for j, p in enumerate(pred_bags):
            if _numbers_agree(g, p):
                scores[i, j] = _bag_f1(p, g)
    rows, cols = linear_sum_assignment(-scores)
    best = np.zeros(max(len(gold_bags), len(pred_bags)))
    for r, c in zip(rows, cols):
        best[r] = max(best[r], scores[r, c])
    return em, round(float(best.mean()), 2)


def drop_scores(output: str, golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """The best EM and F1 over the gold answers (each a tuple of spans); the generation is one span."""
    em = f1 = 0.0
    for gold in golds:
        if gold and gold[0].strip():  # an empty gold answer (no span, number or date) credits nothing
            e, f = drop_em_f1([output], list(gold))
            em, f1 = max(em, e), max(f1, f)
    return {"em": em, "f1": f1}


# ------------------------------------------------------------------------------------------------ open QA


def lm_eval_exact_match(
    output: str,
    golds: Sequence[str],
    ignore_case: bool = True,
    ignore_punctuation: bool = True,
    regexes_to_ignore: Sequence[str] = (),
) -> dict[str, float]:
    """lm-eval's `exact_match` (HF evaluate's): strip the output, delete `regexes_to_ignore` matches, then case
    and ASCII punctuation; right if it equals any gold answer normalized the same way."""

    def norm(text: str) -> str:
        for pattern in regexes_to_ignore:
            text = re.sub(pattern, "", text)
        if ignore_case:
            text = text.lower()
        if ignore_punctuation:
            text = text.translate(str.maketrans("", "", string.punctuation))
        return text

    pred = norm(output.strip())
    return {"em": float(any(pred == norm(g) for g in golds))}


# lm-eval's nq_open drops articles (any case, with their space) before comparing.
NQ_ARTICLES = (r"\b(?:The |the |An |A |The |a |an )",)


def nq_open_scores(output: str, golds: Sequence[str]) -> dict[str, float]:
    return lm_eval_exact_match(output, golds, regexes_to_ignore=NQ_ARTICLES)


def triviaqa_scores(output: str, golds: Sequence[str]) -> dict[str, float]:
    return lm_eval_exact_match(output, golds)


SCORING: dict[str, Callable[[str, Any], dict[str, float]]] = {
    "squad": squad_scores,
    "coqa": coqa_scores,
    "drop": drop_scores,
    "nq_open": nq_open_scores,
    "triviaqa": triviaqa_scores,
}
