"""Score HTML extraction against ground truth: Python's HTML docs vs the reST sources they were built from.

Debian's `python3.11-doc` ships `html/**/*.html` and `html/_sources/**/*.rst.txt`. The reST is the text the
page was rendered from, so it is the page's content without boilerplate. Line-level scores:

- precision: share of extracted lines whose word trigrams are mostly (>= `MATCH`) found in the reST;
- recall: share of reST lines whose word trigrams are mostly found in the extracted text.

Markup (roles, directives, section underlines) is stripped from the reST first; both sides are lowercased
and reduced to word tokens, so line wrapping and inline markup do not count as errors.

    python -m herd.data.extract_eval runs/corpus-sources/python-doc/html --pages 100
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

MATCH = 0.5  # share of a line's trigrams that must appear on the other side for the line to count
_WORD = re.compile(r"\w+", re.UNICODE)
_ROLE = re.compile(r":[\w:+.-]+:`~?!?([^`<]*?)\s*(?:<[^>]*>)?`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]+>`_{1,2}")
_DIRECTIVE = re.compile(r"^\s*\.\.\s+[\w:-]+::\s*")
_UNDERLINE = re.compile(r"^\s*([=\-~^*#+\"'`.])\1{2,}\s*$")
_SKIP_DIRECTIVES = re.compile(
    r"^\s*\.\.\s+(index|toctree|highlight|module|currentmodule|moduleauthor|sectionauthor|testsetup|testcleanup|_[\w-]+:|\|)",
    re.I,
)


def rst_lines(rst: str) -> list[str]:
    """Non-markup lines of a reST source, with roles and links reduced to their text."""
    out: list[str] = []
    skipping = False
    for raw in rst.splitlines():
        if skipping and (not raw.strip() or raw.startswith((" ", "\t"))):
            continue  # body of a directive that renders nothing (index entries, toctree lists)
        skipping = False
        if _SKIP_DIRECTIVES.match(raw):
            skipping = True
            continue
        if _UNDERLINE.match(raw) or re.match(r"^\s*\.\.\s*$", raw):
            continue
        line = _DIRECTIVE.sub("", raw)
        line = _ROLE.sub(r"\1", line)
        line = _LINK.sub(r"\1", line)
        line = line.replace("``", "").replace("**", "").replace("::", ":")
        if line.strip():
            out.append(line)
    return out


def _tokens(line: str) -> list[str]:
    return _WORD.findall(line.lower())


def _grams(tokens: list[str]) -> list[tuple[str, ...]]:
    if len(tokens) < 3:
        return [tuple(tokens)] if tokens else []
    return [tuple(tokens[i : i + 3]) for i in range(len(tokens) - 2)]


def _gram_set(lines: Iterable[str]) -> set[tuple[str, ...]]:
    # Trigrams over the whole text (not per line), so a paragraph wrapped differently still matches.
    tokens = [t for line in lines for t in _tokens(line)]
    grams = set(_grams(tokens))
    grams.update((t,) for t in tokens)
    grams.update(tuple(tokens[i : i + 2]) for i in range(len(tokens) - 1))
    return grams


def _matched_share(lines: list[str], other: set[tuple[str, ...]]) -> tuple[int, int]:
    good = total = 0
    for line in lines:
        grams = _grams(_tokens(line))
        if not grams:
            continue
        total += 1
        good += sum(g in other for g in grams) / len(grams) >= MATCH
    return good, total


def line_scores(extracted: str, truth_lines: list[str]) -> dict[str, int]:
    """Counts for precision (matched/extracted lines) and recall (matched/truth lines) of one page."""
    ext_lines = [line for line in extracted.splitlines() if line.strip()]
    p_good, p_total = _matched_share(ext_lines, _gram_set(truth_lines))
    r_good, r_total = _matched_share(truth_lines, _gram_set(ext_lines))
    return {"p_good": p_good, "p_total": p_total, "r_good": r_good, "r_total": r_total}


def doc_pairs(html_root: str | Path) -> list[tuple[Path, Path]]:
    """(page.html, _sources/page.rst.txt) pairs under a Sphinx HTML folder, sorted."""
    root = Path(html_root)
    pairs = []
    for src in sorted((root / "_sources").rglob("*.rst.txt")):
        rel = src.relative_to(root / "_sources")
        page = root / rel.with_name(rel.name.removesuffix(".rst.txt") + ".html")
        if page.is_file():
            pairs.append((page, src))
    return pairs


def score_engines(
    pairs: list[tuple[Path, Path]], engines: dict[str, Callable[[str], str]]
) -> dict[str, dict[str, float]]:
    """Micro-averaged line precision/recall/F1 and pages/s per engine over the same pages."""
    results = {}
    truths = [rst_lines(src.read_text(encoding="utf-8", errors="replace")) for _, src in pairs]
    htmls = [page.read_text(encoding="utf-8", errors="replace") for page, _ in pairs]
    for name, fn in engines.items():
        tot = dict.fromkeys(("p_good", "p_total", "r_good", "r_total"), 0)
        start = time.perf_counter()
        texts = [fn(h) for h in htmls]
        elapsed = time.perf_counter() - start
        for text, truth in zip(texts, truths):
            for k, v in line_scores(text, truth).items():
                tot[k] += v
        p = tot["p_good"] / max(1, tot["p_total"])
        r = tot["r_good"] / max(1, tot["r_total"])
        results[name] = {
            "pages": len(pairs),
            "precision": round(p, 4),
            "recall": round(r, 4),
            "f1": round(2 * p * r / max(1e-9, p + r), 4),
            "pages_per_s": round(len(pairs) / max(elapsed, 1e-9), 1),
        }
    return results


def default_engines() -> dict[str, Callable[[str], str]]:
    from herd.data.extract import extract_html, extract_trafilatura

    return {"herd": extract_html, "trafilatura": extract_trafilatura}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("html_root", help="python3.11-doc's html/ folder (with _sources/)")
    p.add_argument("--pages", type=int, default=0, help="score every k-th page to get about this many (0 = all)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    pairs = doc_pairs(args.html_root)
    if not pairs:
        print(f"no (html, _sources/*.rst.txt) pairs under {args.html_root}", file=sys.stderr)
        return 2
    if args.pages and len(pairs) > args.pages:
        pairs = pairs[:: len(pairs) // args.pages][: args.pages]
    results = score_engines(pairs, default_engines())
    for name, r in results.items():
        print(f"{name:12s} pages={r['pages']} precision={r['precision']:.3f} recall={r['recall']:.3f} "
              f"f1={r['f1']:.3f} {r['pages_per_s']} pages/s")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
