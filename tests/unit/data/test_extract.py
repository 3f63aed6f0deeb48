"""HTML → text: boilerplate out; code, math and alt text in; markdown markers stripped."""

from __future__ import annotations

import pytest

pytest.importorskip("lxml")

import contextlib

from herd.data.extract import ExtractionError, extract_html, strip_markdown

PAGE = """<html><head><title>T</title><style>p{}</style><script>var x=1;</script></head><body>
<nav><a href="/">Home</a> <a href="/a">About</a></nav>
<div class="sidebar"><ul><li><a href="/x">Related one</a></li><li><a href="/y">Related two</a></li></ul></div>
<main>
<h1>Euler's identity <a class="headerlink" href="#e">¶</a></h1>
<p>The identity <math alttext="e^{i\\pi} + 1 = 0"><mi>e</mi></math> links five constants.</p>
<p>A figure: <img src="f.png" alt="x squared plus y squared"> shows the circle.</p>
<pre>def f(x):
    return x ** 2</pre>
<ul><li>first item</li><li>second item</li></ul>
<table><tr><td>a</td><td>b</td></tr></table>
</main>
<footer>Copyright 2024 Example Corp. All rights reserved.</footer>
<div class="cookie-banner">We use cookies</div>
</body></html>"""


def test_main_text_kept_and_boilerplate_removed() -> None:
    text = extract_html(PAGE)
    assert text.splitlines() == [
        "Euler's identity",
        "The identity e^{i\\pi} + 1 = 0 links five constants.",
        "A figure: x squared plus y squared shows the circle.",
        "def f(x):\n    return x ** 2".splitlines()[0],
        "    return x ** 2",
        "first item",
        "second item",
        "a\tb",
    ]


def test_mathjax_script_tex_is_kept() -> None:
    html = '<html><body><main><p>Area is <script type="math/tex">\\pi r^2</script> exactly.</p></main></body></html>'
    assert extract_html(html) == "Area is \\pi r^2 exactly."


def test_markdown_markers_stripped() -> None:
    assert strip_markdown("## A **bold** [link](http://x.y) title") == "A bold link title"
    assert strip_markdown("- item") == "item"
    assert strip_markdown("---") == ""
    assert strip_markdown("a * b * c stays") == "a * b * c stays"


def test_empty_and_garbage_do_not_crash() -> None:
    assert extract_html("") == ""
    assert extract_html(b"\x00\x01\x02") == ""
    assert isinstance(extract_html("<div>" * 5000 + "deep" + "</div>" * 5000), str)
    with contextlib.suppress(ExtractionError):
        extract_html("<" * 10000)
