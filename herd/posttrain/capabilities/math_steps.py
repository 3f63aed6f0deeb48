"""Step labels checked by sympy, and a step-wise reward model trained on them [P §4.3.3].

The paper trains step-wise reward models on step-labelled traces and uses them to remove traces whose
intermediate reasoning is wrong even when the final answer is right. herd labels a step by evaluating
the equations written in it (`12 + 3*4 = 24`, or `3x = 15` checked at the known solution), and trains
the reward model on those labels.

Why a frozen trunk with a logistic-regression head: the paper's reward models are a scalar head on a
pretrained checkpoint (herd.posttrain.reward.RewardModel); a few hundred labelled steps from one round
would overfit a fine-tuned 135M trunk and cost minutes per round on a CPU core, while a linear head on
the frozen policy's hidden state at each step's last token is convex, trains in well under a second
(scikit-learn), and still reads the model's own representation of the step, so it also scores steps
that hold no equation sympy can parse.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from tokenize import TokenError
from typing import Any

import sympy
import torch
from sympy.parsing.sympy_parser import (
    convert_xor,
    implicit_multiplication_application,
    parse_expr,
    standard_transformations,
)

_TRANSFORMS = (*standard_transformations, implicit_multiplication_application, convert_xor)
_LIST_MARK = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_MATH_RUN = re.compile(r"[0-9x().+\-*/×÷^ ]*=[0-9x().+\-*/×÷^ =]*")
_TIMES_X = re.compile(r"(\d)\s+x\s+(?=\d)")
_X = sympy.Symbol("x")


@dataclass
class Step:
    text: str
    end: int  # character offset of the step's end in the reply
    label: int | None  # 1 every equation holds, 0 one does not, None nothing checkable


def split_steps(reply: str) -> list[tuple[str, int]]:
    """Non-empty lines of a reply with their end offsets: one written line is one reasoning step."""
    out, pos = [], 0
    for line in reply.split("\n"):
        pos += len(line)
        if line.strip():
            out.append((line, pos))
        pos += 1
    return out


def _parse(side: str) -> sympy.Expr | None:
    text = side.strip().rstrip(".").replace("×", "*").replace("÷", "/")
    if not text or not re.search(r"[0-9x]", text):
        return None
    try:
        expr = parse_expr(text, local_dict={"x": _X}, transformations=_TRANSFORMS)
    except (sympy.SympifyError, SyntaxError, TypeError, TokenError, ValueError, AttributeError):
        return None
    return expr if isinstance(expr, sympy.Expr) else None


def equations(step: str) -> list[list[sympy.Expr]]:
    """Each chain `a = b = c` written in the step, as parsed sides (chains with an unparseable side are skipped)."""
    line = _LIST_MARK.sub("", step).replace(",", "").replace("$", "")
    line = _TIMES_X.sub(r"\1 * ", line)  # "4 x 3" is a product; "3x" stays the unknown
    out = []
    for run in _MATH_RUN.findall(line):
        sides = [_parse(s) for s in run.split("=")]
        if len(sides) >= 2 and all(s is not None for s in sides):
            out.append(sides)
    return out


def check_step(step: str, solution: sympy.Rational | None = None) -> int | None:
    """1 if every equation in the step holds (x taken as `solution` when it appears), 0 if one fails, None
    if the step has no equation to check."""
    chains = equations(step)
    if not chains:
        return None
    for sides in chains:
        if any(s.free_symbols - {_X} for s in sides):
            return None
        if any(s.free_symbols for s in sides):
            if solution is None:
                return None
            sides = [s.subs(_X, solution) for s in sides]
        if any(sympy.simplify(a - b) != 0 for a, b in itertools.pairwise(sides)):
            return 0
    return 1


def label_steps(reply: str, solution: sympy.Rational | None = None) -> list[Step]:
    return [Step(text, end, check_step(text, solution)) for text, end in split_steps(reply)]


@torch.inference_mode()
def step_features(
    model: torch.nn.Module, chat: Any, prompt: Sequence[Mapping[str, str]], reply: str, ends: Sequence[int]
) -> torch.Tensor:
    """(len(ends), dim): the trunk's final hidden state at the last token of each step, one forward per trace."""
    tok = chat.tokenizer
    head = chat.encode_prompt(list(prompt))
    ids = head + tok.encode(reply)
    pos = [min(len(ids), len(head) + len(tok.encode(reply[:e]))) - 1 for e in ends]
    hidden = model(torch.tensor([ids]), return_hidden=True)[0].float()  # (T, dim)
    return hidden[pos]


class StepRewardModel:
    """P(step is correct) from the frozen policy's hidden state: logistic regression over standardized features."""

    def __init__(self, c: float = 1.0, seed: int = 0) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)
        self.pipe = make_pipeline(StandardScaler(), clf)

    def fit(self, x: torch.Tensor, y: Sequence[int]) -> StepRewardModel:
        if len(set(y)) < 2:
            raise ValueError(f"step reward model: needs correct and wrong steps, got labels {sorted(set(y))}")
        self.pipe.fit(x.numpy(), list(y))
        return self

    def score(self, x: torch.Tensor) -> list[float]:
        if len(x) == 0:
            return []
        return self.pipe.predict_proba(x.numpy())[:, 1].tolist()
