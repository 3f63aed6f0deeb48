"""HTML → plain text as the paper describes [P §3.1.1]: boilerplate removed, code and math kept, image alt
text kept (it often holds the math), markdown markers stripped.

herd's extractor, in order:
1. parse with lxml; turn math into its TeX (MathML `alttext`/TeX annotation, MathJax scripts) and images
   into their alt text, before scripts and images are removed;
2. drop non-content tags (script, style, nav, header, footer, aside, forms...) and elements whose class,
   id or ARIA role names boilerplate (sidebar, menu, breadcrumbs, cookie banners, "¶" header links);
3. pick the main content root: <main>, role=main, the largest <article>, or a content-named block, else <body>;
4. drop link-dense blocks (menus that survived step 2) inside that root;
5. serialize blocks as lines: <pre> verbatim (code keeps its indentation), inline whitespace collapsed,
   table cells separated by tabs, list items one per line without bullets;
6. strip markdown markers (heading hashes, emphasis, bullets, link syntax) from non-code lines.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

DROP_TAGS = {
    "script", "style", "noscript", "template", "iframe", "form", "button", "input", "select", "textarea",
    "nav", "header", "footer", "aside", "canvas", "object", "embed", "head", "link", "meta", "dialog", "menu",
}  # fmt: skip
BLOCK_TAGS = {
    "p", "div", "section", "article", "main", "body", "html", "blockquote", "ul", "ol", "li", "dl", "dt", "dd",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "tr", "thead", "tbody", "tfoot", "caption", "figure",
    "figcaption", "hr", "address", "details", "summary", "center", "fieldset", "legend",
}  # fmt: skip
CELL_TAGS = {"td", "th"}
BOILERPLATE = re.compile(
    r"(?:^|[\s_-])(?:nav|navbar|navigation|menu|sidebar|sphinxsidebar|sphinxsidebarwrapper|footer|header|"
    r"breadcrumbs?|related|cookies?|banner|share|sharing|social|advert|advertisement|ads|promo|subscribe|"
    r"newsletter|skip-?link|headerlink|widget|popup|modal|masthead|pagination|pager|toc|sidebar-\w+|"
    r"copyright|mobile-nav|searchbox|search)(?:$|[\s_-])",
    re.I,
)
BOILERPLATE_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar"}
CONTENT_NAMES = re.compile(
    r"(?:^|[\s_-])(?:content|main|body|article|post|entry|document|story|text)(?:$|[\s_-])", re.I
)
MAX_LINK_DENSITY = 0.6  # share of a block's text that sits inside <a>: above it the block is a menu
MIN_BLOCK_CHARS_KEEP = 300  # link-dense blocks longer than this are kept (link-heavy prose)

_WS = re.compile(r"[ \t\r\f\v\u00a0]+")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")
_MD_BULLET = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+(?=\S)")
_MD_EMPH = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_MD_LINK = re.compile(r"!?\[([^\]\n]*)\]\([^)\s]*\)")
_MD_QUOTE = re.compile(r"^\s*>\s?")
_MD_RULE = re.compile(r"^\s*(?:[-*_]\s*){3,}$")

_CONTROL = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")  # C0 controls other than tab and newline
_PRE = "\x00P"  # marks a preformatted piece (kept verbatim)
_BREAK = "\x00B"  # a block boundary


class ExtractionError(ValueError):
    """HTML that cannot be parsed (drop reason `html_unparseable`)."""


def extract_html(html: str | bytes) -> str:
    """Main text of an HTML page as plain text (see the module docstring for the steps)."""
    import lxml.etree
    import lxml.html

    if isinstance(html, bytes):
        html = html.decode("utf-8", errors="replace")
    html = html.replace("\x00", "")
    if not html.strip():
        return ""
    try:
        # lxml refuses str input that carries an XML encoding declaration; encode it so lxml reads the bytes.
        root = lxml.html.document_fromstring(html.encode("utf-8"), parser=_parser())
    except (lxml.etree.ParserError, ValueError) as e:
        raise ExtractionError(str(e)) from None
    # lxml makes a Python proxy (through lxml.html's class lookup, in Python) each time an element is
    # reached and frees it when unreferenced; holding them all lets the passes below reuse them.
    elements = list(root.iter())
    _math_to_tex(root)
    _images_to_alt(root)
    _drop_boilerplate(root)
    main = _main_root(root)
    _drop_link_dense(main)
    try:
        parts = _serialize(main)
    except RecursionError:
        raise ExtractionError("nesting too deep") from None
    del elements
    return _to_text(parts)


def _parser() -> Any:
    import lxml.html

    return lxml.html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True)


def _math_to_tex(root: Any) -> None:
    for script in root.iter("script"):
        kind = (script.get("type") or "").lower()
        if kind.startswith("math/tex"):  # MathJax 2 source
            _replace_with_text(script, f" {(script.text or '').strip()} ")
    for math in list(root.iter("math", "{http://www.w3.org/1998/Math/MathML}math")):
        tex = math.get("alttext")
        if not tex:
            ann = [a for a in math.iter() if isinstance(a.tag, str) and a.tag.endswith("annotation")]
            tex = next((a.text for a in ann if "tex" in (a.get("encoding") or "").lower() and a.text), None)
        _replace_with_text(math, f" {(tex or math.text_content()).strip()} ")
    # KaTeX renders MathML plus HTML glyphs: keep the TeX from the MathML part, drop the glyphs.
    for el in list(root.iter()):
        if isinstance(el.tag, str) and "katex-html" in (el.get("class") or ""):
            _remove(el)


def _images_to_alt(root: Any) -> None:
    for img in list(root.iter("img")):
        alt = (img.get("alt") or "").strip()
        _replace_with_text(img, f" {alt} " if alt else "")


def _replace_with_text(el: Any, text: str) -> None:
    import lxml.html

    span = lxml.html.Element("span")
    span.text = text
    span.tail = el.tail
    parent = el.getparent()
    if parent is not None:
        parent.replace(el, span)


def _remove(el: Any) -> None:
    parent = el.getparent()
    if parent is None:
        return
    if el.tail:  # the tail is text after the element: it belongs to the parent, keep it
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


def _is_boilerplate(el: Any) -> bool:
    tag = el.tag.lower() if isinstance(el.tag, str) else ""
    if tag in DROP_TAGS:
        return True
    attrs = el.attrib
    if not attrs:  # every test below reads an attribute: most elements have none
        return False
    if (attrs.get("role") or "").lower() in BOILERPLATE_ROLES or attrs.get("hidden") is not None:
        return True
    if (attrs.get("aria-hidden") or "").lower() == "true":
        return True
    if "display:none" in (attrs.get("style") or "").replace(" ", "").lower():
        return True
    if tag in ("html", "body", "main", "article"):
        return False
    return _boilerplate_names(f"{attrs.get('class') or ''} {attrs.get('id') or ''}")


@lru_cache(maxsize=1 << 16)
def _boilerplate_names(names: str) -> bool:
    """Class and id names that say boilerplate; the same few names recur on every page of a site."""
    return bool(names.strip()) and bool(BOILERPLATE.search(names))


def _drop_boilerplate(root: Any) -> None:
    doomed = [el for el in root.iter() if isinstance(el.tag, str) and _is_boilerplate(el)]
    for el in doomed:
        if el.getparent() is not None:
            _remove(el)


def _text_len(el: Any) -> int:
    return len(_WS.sub(" ", el.text_content()).strip())


def _main_root(root: Any) -> Any:
    body = root.find("body")
    body = body if body is not None else root
    candidates = list(root.iter("main")) + [el for el in root.iter() if (el.get("role") or "") == "main"]
    if not candidates:
        candidates = list(root.iter("article"))
    if not candidates:
        candidates = [
            el
            for el in root.iter("div", "section", "td")
            if CONTENT_NAMES.search(f"{el.get('class') or ''} {el.get('id') or ''}")
        ]
    if not candidates:
        return body
    best = max(candidates, key=_text_len)
    # A "content" block that holds little of the page's text is a fragment, not the main content.
    return best if _text_len(best) >= 0.25 * _text_len(body) else body


def _drop_link_dense(main: Any) -> None:
    for el in list(main.iter("ul", "ol", "div", "table", "p", "dl", "section", "span")):
        if el is main or el.getparent() is None:
            continue
        raw = el.text_content()
        if _surely_longer(raw, MIN_BLOCK_CHARS_KEEP):  # most blocks: no whitespace collapsing over all of it
            continue
        text = len(_WS.sub(" ", raw).strip())
        if text == 0 or text > MIN_BLOCK_CHARS_KEEP:
            continue
        linked = sum(len(_WS.sub(" ", a.text_content()).strip()) for a in el.iter("a"))
        if linked / text > MAX_LINK_DENSITY:
            _remove(el)


def _surely_longer(raw: str, n: int) -> bool:
    """Whether `raw` has more than `n` non-space characters in its first 4n: then its collapsed, stripped
    text (which keeps every non-space character) is longer than `n`."""
    return len("".join(raw[: 4 * n].split())) > n


def _serialize(el: Any) -> list[str]:
    parts: list[str] = []
    _walk(el, parts)
    return parts


def _walk(el: Any, parts: list[str]) -> None:
    if not isinstance(el.tag, str):
        return
    tag = el.tag.lower()
    if tag == "br":
        parts.append(_BREAK)
        return
    if tag == "pre":
        parts.extend((_BREAK, _PRE + el.text_content(), _BREAK))
        return
    block = tag in BLOCK_TAGS
    if block:
        parts.append(_BREAK)
    if el.text:
        parts.append(el.text)
    for child in el:
        _walk(child, parts)
        if child.tail:
            parts.append(child.tail)
    if tag in CELL_TAGS:
        parts.append("\t")
    if block:
        parts.append(_BREAK)


def _to_text(parts: list[str]) -> str:
    lines: list[str] = []
    current: list[str] = []

    def flush() -> None:
        line = _CONTROL.sub("", "".join(current)).replace("\n", " ")  # per character: as well on the whole line
        line = "\t".join(_WS.sub(" ", cell).strip() for cell in line.split("\t")).strip()
        if line:
            lines.append(strip_markdown(line))
        current.clear()

    for part in parts:
        if part == _BREAK:
            flush()
        elif part.startswith(_PRE):
            flush()
            code = _CONTROL.sub("", part[len(_PRE) :]).strip("\n")
            if code.strip():
                lines.append(code.rstrip())
        else:
            current.append(part)
    flush()
    return "\n".join(lines)


def strip_markdown(line: str) -> str:
    """One prose line without markdown markers: # headings, **bold**, bullets, [links](url), > quotes."""
    if _MD_RULE.match(line):
        return ""
    line = _MD_HEADING.sub("", line)
    line = _MD_QUOTE.sub("", line)
    line = _MD_BULLET.sub("", line)
    line = _MD_LINK.sub(r"\1", line)
    return _MD_EMPH.sub(r"\2", line)


def extract_trafilatura(html: str) -> str:
    """trafilatura's default extraction (the baseline herd is scored against)."""
    import trafilatura

    return trafilatura.extract(html) or ""


class HtmlExtractor(PipelineStep):
    """Replaces the HTML of `raw_format == "html"` documents with their extracted text.

    Unparseable HTML is marked with `read_error = html_unparseable`; pages with no text left get
    `no_content_after_extraction`. Both are dropped (and counted) by the next `ReadErrorFilter`.
    """

    type = "🛢 - EXTRAC"
    name = "herd html"

    def __init__(self, engine: str = "herd"):
        super().__init__()
        if engine not in ("herd", "trafilatura"):
            raise ValueError(f"extract.engine: expected 'herd' or 'trafilatura', got {engine!r}")
        self.engine = engine

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        fn = extract_html if self.engine == "herd" else extract_trafilatura
        for doc in data:
            if doc.metadata.get("raw_format") == "html" and "read_error" not in doc.metadata:
                with self.track_time():
                    try:
                        doc.text = fn(doc.text)
                    except ExtractionError:
                        doc.metadata["read_error"] = "html_unparseable"
                        doc.text = ""
                if not doc.text.strip() and "read_error" not in doc.metadata:
                    doc.metadata["read_error"] = "no_content_after_extraction"
                self.stat_update("html_extracted")
            yield doc
