"""PII masking [P §3.1.1]: emails, phone numbers and IP addresses replaced by placeholders, with counts.

Masking keeps the document (it is a formatter, not a filter); the stage's manifest reports how many of
each kind were masked (datatrove stats `pii_email`, `pii_phone`, `pii_ip`).
"""

from __future__ import annotations

import re

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

EMAIL = re.compile(r"\b[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})*\.[A-Za-z]{2,24}\b")
IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
# International or North-American style numbers with separators; bare digit runs (years, ids) are left alone.
PHONE = re.compile(r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}(?![\w.])")
# Cheap necessary conditions, searched first: each starts with a digit, so `re` skips to digits in C, where the
# patterns above (which start with a word boundary) try every position. No hint, no match: the pass is skipped.
IPV4_HINT = re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d")  # inside every IPV4 match: "x.B.C.y"
PHONE_HINT = re.compile(r"\d{3}[\s.-]\d{3}")  # inside every PHONE match: its last two digit groups
PLACEHOLDERS = {"email": "<EMAIL>", "phone": "<PHONE>", "ip": "<IP>"}
# Non-routable addresses are documentation and configuration, not personal data.
_PUBLIC_IP_SKIP = ("0.", "127.", "10.", "192.168.", "255.")


def mask_pii(text: str) -> tuple[str, dict[str, int]]:
    """(masked text, {kind: count})."""
    counts = {"email": 0, "phone": 0, "ip": 0}

    def sub(kind: str):
        def repl(m: re.Match[str]) -> str:
            if kind == "ip" and m.group(0).startswith(_PUBLIC_IP_SKIP):
                return m.group(0)
            counts[kind] += 1
            return PLACEHOLDERS[kind]

        return repl

    if "@" in text:
        text = EMAIL.sub(sub("email"), text)
    if IPV4_HINT.search(text):
        text = IPV4.sub(sub("ip"), text)
    if PHONE_HINT.search(text):
        text = PHONE.sub(sub("phone"), text)
    return text, counts


class PIIMasker(PipelineStep):
    """Masks emails, phone numbers and public IPv4 addresses in every document (code included)."""

    type = "✂️ - FORMAT"
    name = "pii mask"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            with self.track_time():
                doc.text, counts = mask_pii(doc.text)
            for kind, n in counts.items():
                if n:
                    self.stat_update(f"pii_{kind}", value=n)
                    self.stat_update("docs_with_pii")
            yield doc
