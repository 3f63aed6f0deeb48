"""A tiny raw corpus with known duplicates, repeated lines and hostile files (importable by tests)."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

WORDS = [
    "river",
    "mountain",
    "history",
    "language",
    "science",
    "garden",
    "winter",
    "music",
    "market",
    "council",
    "teacher",
    "engine",
    "harbor",
    "village",
    "theory",
    "measure",
    "signal",
    "forest",
    "letter",
    "window",
    "silver",
    "doctor",
    "island",
    "bridge",
    "number",
    "season",
    "animal",
    "paper",
    "station",
    "library",
    "energy",
    "planet",
    "kitchen",
    "culture",
    "travel",
    "camera",
    "museum",
    "weather",
    "ocean",
    "battle",
    "question",
    "student",
    "thunder",
    "machine",
    "harvest",
    "journey",
    "festival",
    "morning",
    "evening",
]
REPEATED = "Subscribe to our newsletter for weekly updates and special offers today"
SIX_TIMES = "Printed in the public domain for readers everywhere this season"


def prose(seed: int, n_words: int = 160) -> str:
    rng = random.Random(seed)
    sentences, words = [], 0
    while words < n_words:
        k = rng.randint(8, 14)
        s = " ".join(rng.choice(WORDS) for _ in range(k))
        sentences.append(s.capitalize() + ".")
        words += k
    return "\n".join(" ".join(sentences[i : i + 3]) for i in range(0, len(sentences), 3))


def build(root: Path, big: bool = True) -> Path:
    raw = root / "raw"
    (raw / "prose").mkdir(parents=True)
    for i in range(12):
        text = prose(i)
        if i < 8:
            text += "\n" + REPEATED  # 8 > 6 occurrences: removed everywhere
        if 2 <= i < 8:
            text += "\n" + SIX_TIMES  # exactly 6: kept
        (raw / "prose" / f"doc{i:02d}.txt").write_text(text)
    (raw / "prose" / "exact-copy.txt").write_text((raw / "prose" / "doc09.txt").read_text())
    near = (raw / "prose" / "doc10.txt").read_text().split(" ")
    near[5] = "changed"
    (raw / "prose" / "near-copy.txt").write_text(" ".join(near))
    rows = [
        {"id": "old", "text": prose(100), "url": "https://news.example/a", "timestamp": "2022-01-01T00:00:00Z"},
        {"id": "new", "text": prose(101), "url": "https://www.news.example/a/", "timestamp": "2023-06-01T00:00:00Z"},
        {"id": "other", "text": prose(102), "url": "https://news.example/b", "timestamp": "2023-06-01T00:00:00Z"},
    ]
    (raw / "web").mkdir()
    (raw / "web" / "pages.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    h = raw / "hostile"
    h.mkdir()
    (h / "bad.txt").write_bytes(b"caf\xe9 \xff broken " * 40)
    rows = "".join(
        json.dumps({"text": f"record {i}: " + prose(300 + i, 30).replace("\n", " ")}) + "\n" for i in range(200)
    )
    (h / "trunc.jsonl.gz").write_bytes(gzip.compress(rows.encode())[:-40])  # cut inside the last records
    (h / "mixed.jsonl").write_text(json.dumps({"text": prose(200)}) + '\n{"text": oops\n')
    (h / "empty.txt").write_text("")
    (h / "blob.bin").write_bytes(bytes(range(256)) * 10)
    if big:
        with open(h / "huge.txt", "wb") as f:  # 100 MB (sparse): dropped by size, never read
            f.truncate(100 * 2**20)
    return raw
