"""CIs as the paper defines them, pass@k, and answer extraction."""

import math

import pytest

from herd.eval.extract import extract, extract_number, is_correct, last_boxed, normalize_math
from herd.eval.stats import ci95, fmt_score, pass_at_k


def test_ci95_is_the_papers_formula() -> None:
    assert ci95(0.5, 100) == pytest.approx(1.96 * math.sqrt(0.25 / 100))
    assert ci95(0.0, 10) == 0.0 and ci95(1.0, 10) == 0.0
    assert fmt_score(0.5, 100) == "50.0 ± 9.8"


def test_pass_at_k() -> None:
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - math.comb(7, 5) / math.comb(10, 5))
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("She has 3 + 4 = 7 apples. The answer is 7.", "7"),
        ("So the answer is $1,234.", "1234"),
        ("16 - 3 - 4 = 9 eggs. 9 * 2 = 18\n#### 18", "18"),
        ("first 5 then 12.50", "12.5"),
        ("no digits", None),
    ],
)
def test_cot_number_extraction(text: str, want: str | None) -> None:
    assert extract_number(text) == want


def test_math_boxed_and_normalization() -> None:
    assert last_boxed(r"so \boxed{\frac{1}{2}} and finally \boxed{\left( 3, \frac{\pi}{2} \right)}") == (
        r"\left( 3, \frac{\pi}{2} \right)"
    )
    assert normalize_math(r"\dfrac12") == normalize_math(r"\frac{1}{2}")
    assert is_correct(extract(r"Thus $\boxed{0.5}$.", "boxed"), ".5", "boxed")
    assert is_correct(extract(r"\boxed{\text{(C)}}", "boxed"), "(C)", "boxed")
    assert not is_correct(None, "1", "boxed")


def test_regex_and_exact() -> None:
    assert extract("Final: B because", r"regex:Final: ([A-D])") == "B"
    assert extract("  yes ", "exact") == "yes"
    with pytest.raises(ValueError, match="unknown answer extraction"):
        extract("x", "magic")
