"""Line-level precision/recall against reST ground truth, on literal pages."""

from __future__ import annotations

from herd.data.extract_eval import line_scores, rst_lines

RST = """:mod:`json` --- JSON encoder
============================

.. index:: single: JSON

The :func:`dumps` function serializes ``obj`` to a string.
It is documented in `the guide <https://x.y>`_.

.. note::

   Keys are strings.
"""


def test_rst_markup_is_stripped() -> None:
    assert rst_lines(RST) == [
        "json --- JSON encoder",
        "The dumps function serializes obj to a string.",
        "It is documented in the guide.",
        "   Keys are strings.",
    ]


def test_line_scores() -> None:
    truth = rst_lines(RST)
    good = (
        "json — JSON encoder\n"
        "The dumps() function serializes obj to a string. It is documented in the guide.\n"
        "Keys are strings."
    )
    s = line_scores(good, truth)
    assert s["p_good"] == s["p_total"] == 3
    noisy = good + "\nCookie settings accept all\nPrevious topic next topic index modules"
    s = line_scores(noisy, truth)
    assert (s["p_good"], s["p_total"]) == (3, 5)
    assert s["r_good"] >= 4
