"""Results as JSON, a Markdown table and a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from herd.core.io import atomic_write_text
from herd.eval.harness import TaskResult


def results_table(results: Sequence[TaskResult], model: str = "") -> str:
    """One line per task: headline score ± 95% CI, N, settings, the other metrics."""
    lines = [
        f"Results{' for ' + model if model else ''} (%, ± 95% CI = 1.96·√(S(1−S)/N); F1 and bpb: 1.96·σ/√N)",
        "",
        "| task | metric | score | N | shots | mode | other metrics | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        others = ", ".join(f"{k} {_pm(v, r.metric_ci(k), k)}" for k, v in r.metrics.items() if k != r.metric)
        lines.append(
            f"| {r.task} | {r.metric} | {_pm(r.score, r.ci, r.metric)} | {r.n} | "
            f"{r.settings.get('shots', 0)} | {r.settings.get('mode', '')} | {others} | {r.seconds:.0f} |"
        )
    return "\n".join(lines)


def _pm(value: float, ci: float, metric: str) -> str:
    """'63.2 ± 2.1' in percent; bits per byte as they are."""
    if metric == "bpb":
        return f"{value:.3f} ± {ci:.3f}"
    return f"{100 * value:.1f} ± {100 * ci:.1f}"


def markdown_to_html(md: str) -> str:
    """Pipe tables to <table>, other lines to paragraphs (enough for herd's own reports)."""
    out, rows = [], []

    def flush() -> None:
        if rows:
            head, body = rows[0], rows[2:] if len(rows) > 1 else []
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
            out.append("</table>")
            rows.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        else:
            flush()
            if line.strip():
                out.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "\n".join(out)


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
    "th{background:#f3f3f3}img{max-width:100%}"
)


def write_report(out: str | Path, sections: Sequence[tuple[str, str]], images: Sequence[Path] = ()) -> list[Path]:
    """`results.md` and `results.html` from (title, markdown) sections; PNGs embedded in the HTML."""
    out = Path(out)
    md = "\n\n".join(f"## {title}\n\n{body}" for title, body in sections)
    parts = [f"<h2>{html.escape(t)}</h2>\n{markdown_to_html(b)}" for t, b in sections]
    for img in images:
        data = base64.b64encode(Path(img).read_bytes()).decode()
        parts.append(f'<img alt="{html.escape(Path(img).stem)}" src="data:image/png;base64,{data}">')
    page = f"<!doctype html><meta charset=utf-8><title>herd eval</title><style>{_STYLE}</style>\n" + "\n".join(parts)
    return [atomic_write_text(out / "results.md", md + "\n"), atomic_write_text(out / "results.html", page + "\n")]


def write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def write_records(path: str | Path, records: Sequence[dict[str, Any]]) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
    return atomic_write_text(path, text)
