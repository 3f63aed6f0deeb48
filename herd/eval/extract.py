"""Answers out of generated text: chain-of-thought "The answer is X", GSM8K numbers, MATH's \\boxed{}, regexes."""

from __future__ import annotations

import re

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_ANSWER_IS = re.compile(r"answer is[:\s]*\$?\\?\(?\s*(.+?)(?:\.\s|\.$|\n|$)", re.IGNORECASE)


def clean_number(text: str) -> str:
    """'$1,234.50' → '1234.5'; '18.0' → '18'; non-numbers come back stripped."""
    t = text.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        value = float(t)
    except ValueError:
        return t
    return str(int(value)) if value.is_integer() else repr(value)


def extract_number(text: str) -> str | None:
    """The CoT answer: 'The answer is X' if stated, else '#### X', else the last number in the text."""
    m = _ANSWER_IS.search(text)
    if m:
        nums = _NUMBER.findall(m.group(1))
        if nums:
            return clean_number(nums[0])
    if "####" in text:
        nums = _NUMBER.findall(text.split("####")[-1])
        if nums:
            return clean_number(nums[0])
    nums = _NUMBER.findall(text)
    return clean_number(nums[-1]) if nums else None


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), braces matched."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0:
        m = re.match(r"\\boxed ([^\s$]+)", text[start:])
        return m.group(1) if m else None
    depth = 0
    for i in range(brace, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[brace + 1 : i]
    return None


_MATH_DROP = [
    "\\left",
    "\\right",
    "\\!",
    "\\,",
    "\\;",
    "\\:",
    "$",
    "\\$",
    "^\\circ",
    "^{\\circ}",
    "\\%",
    "%",
    "\\displaystyle",
    "\\text{ }",
]


def normalize_math(answer: str) -> str:
    """A MATH answer in a canonical spelling (after Hendrycks et al.'s and Minerva's normalizers)."""
    s = answer.strip()
    s = re.sub(r"\\text\{\s*([^}]*)\}", r"\1", s)
    s = re.sub(r"\\mbox\{\s*([^}]*)\}", r"\1", s)
    for token in _MATH_DROP:
        s = s.replace(token, "")
    s = s.replace("dfrac", "frac").replace("tfrac", "frac").replace("\\le(", "(")
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt(\d)", r"\\sqrt{\1}", s)
    s = s.replace(" ", "").rstrip(".")
    if s.startswith("x=") or s.startswith("y="):
        s = s[2:]
    if re.fullmatch(r"-?\d+\.0+", s):
        s = s.split(".")[0]
    if re.fullmatch(r"0?\.\d+", s):
        s = "0" + s.lstrip("0") if s.startswith(".") else s
    return s


def extract(text: str, how: str) -> str | None:
    """Apply an extraction rule: number | boxed | exact | regex:<pattern> (group 1, else the match)."""
    if how == "number":
        return extract_number(text)
    if how == "boxed":
        boxed = last_boxed(text)
        if boxed is not None:
            return normalize_math(boxed)
        m = _ANSWER_IS.search(text)
        return normalize_math(m.group(1)) if m else None
    if how == "exact":
        return text.strip()
    if how.startswith("regex:"):
        m = re.search(how[len("regex:") :], text)
        if not m:
            return None
        return (m.group(1) if m.groups() else m.group(0)).strip()
    raise ValueError(f"unknown answer extraction '{how}' (number, boxed, exact or regex:<pattern>)")


def is_correct(pred: str | None, gold: str, how: str) -> bool:
    if pred is None:
        return False
    if how == "number":
        return clean_number(pred) == clean_number(gold)
    if how == "boxed":
        a, b = normalize_math(pred), normalize_math(gold)
        if a == b:
            return True
        try:
            return abs(float(a) - float(b)) < 1e-6
        except ValueError:
            return False
    return pred.strip() == gold.strip()
