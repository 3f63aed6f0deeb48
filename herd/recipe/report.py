"""The run report: one offline HTML page (index.html, PNGs beside it, no scripts) and its Markdown twin.

`write_report(stages, out)` only renders what each stage recorded: the `counts` of its MANIFEST.json (what
its `run` returned) and the figures and tables it declares there under `report`. It never recomputes a
number or reads a stage's private files; a stage that is missing says "not run", a number a stage did not
record says "not recorded". Sections, in recipe order:

  run         total and per-stage wall time
  data        curation funnel: documents in/kept/dropped by reason per step [P §3.1], the mix [P §3.1.2]
  tokenizer   compression in chars/token and bytes/token per source [P §3.2]
  pretrain    loss vs tokens with ramp/long-context/annealing boundaries, LR/batch/seq schedules [P §3.4]
  anneal      held-out loss of each annealing snapshot vs their Polyak average [P §3.4.3]
  posttrain   held-out metrics per round (RM, rejection sampling, SFT, DPO) [P §4]
  eval        scores ± 95% CI (chat, and base if given), robustness, contamination [P §5]
  safety      VR / FRR ± 95% CI per category without and with the guard; 50-gram memorization [P §5.4]
  vision      held-out VQA vs blind baselines, CLIP retrieval, DPO, video QA, each ± 95% CI [P §7]
  speech      ASR WER [95% CI] on held-out sentences (trained voices) and unseen voices, before/after [P §8]
  chats       sample completions before and after post-training (given by the caller)
  lineage     every MANIFEST.json: config hash, inputs with hashes, upstream manifests, versions, time

Images are referenced by file name, so the folder can be copied anywhere and still opens offline.
"""

from __future__ import annotations

import hashlib
import html
import json
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from herd.core.io import MANIFEST_NAME, atomic_write_text

# Recipe order; "eval_base" is the base model evaluated before post-training.
STAGES = (
    "corpus",
    "curate",
    "tokenizer",
    "tokens",
    "pretrain",
    "eval_base",
    "posttrain",
    "eval",
    "safety",
    "memorization",
    "vision",
    "speech",
)
NOT_RUN = "not run"
NOT_RECORDED = "not recorded"

# ---------------------------------------------------------------------------------------------- blocks
# A section is a list of blocks rendered twice, to HTML and to Markdown, so the two never drift apart.


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    head: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""


@dataclass
class Figure:
    file: str  # a file name inside the report folder
    alt: str


@dataclass
class Preformatted:
    text: str


@dataclass
class Details:
    summary: str
    blocks: list[Any]


@dataclass
class Chat:
    prompt: str
    base: str
    chat: str


@dataclass
class Section:
    key: str
    title: str
    blocks: list[Any] = field(default_factory=list)


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _html(b: Any) -> str:
    e = html.escape
    if isinstance(b, Paragraph):
        return f"<p>{e(b.text)}</p>"
    if isinstance(b, Table):
        cap = f"<caption>{e(b.caption)}</caption>" if b.caption else ""
        head = "".join(f"<th>{e(h)}</th>" for h in b.head)
        rows = "".join("<tr>" + "".join(f"<td>{e(_cell(c))}</td>" for c in r) + "</tr>" for r in b.rows)
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if isinstance(b, Figure):
        return f'<figure><img src="{e(b.file)}" alt="{e(b.alt)}"><figcaption>{e(b.alt)}</figcaption></figure>'
    if isinstance(b, Preformatted):
        return f"<pre>{e(b.text)}</pre>"
    if isinstance(b, Details):
        return f"<details><summary>{e(b.summary)}</summary>{''.join(map(_html, b.blocks))}</details>"
    if isinstance(b, Chat):
        cols = "".join(
            f"<div><h4>{label}</h4><pre>{e(text)}</pre></div>" for label, text in (("base", b.base), ("chat", b.chat))
        )
        return f'<div class="chat"><p class="prompt">{e(b.prompt)}</p><div class="pair">{cols}</div></div>'
    raise TypeError(f"unknown report block {type(b).__name__}")


def _md(b: Any) -> str:
    if isinstance(b, Paragraph):
        return b.text
    if isinstance(b, Table):
        esc = [[_cell(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in b.rows]
        lines = [f"| {' | '.join(b.head)} |", "|" + "---|" * len(b.head), *(f"| {' | '.join(r)} |" for r in esc)]
        return (f"*{b.caption}*\n\n" if b.caption else "") + "\n".join(lines)
    if isinstance(b, Figure):
        return f"![{b.alt}]({b.file})"
    if isinstance(b, Preformatted):
        return f"```\n{b.text}\n```"
    if isinstance(b, Details):
        return f"**{b.summary}**\n\n" + "\n\n".join(map(_md, b.blocks))
    if isinstance(b, Chat):
        return f"**Prompt:** {b.prompt}\n\n*base:*\n```\n{b.base}\n```\n*chat:*\n```\n{b.chat}\n```"
    raise TypeError(f"unknown report block {type(b).__name__}")


# ---------------------------------------------------------------------------------------------- entry


@dataclass
class _Ctx:
    stages: dict[str, Path]
    out: Path
    chats: list[dict] | None

    def dir(self, key: str) -> Path | None:
        p = self.stages.get(key)
        return Path(p) if p is not None and Path(p).is_dir() else None


def write_report(
    stages: dict[str, Path], out: Path, chats: list[dict] | None = None, title: str = "herd recipe"
) -> Path:
    """Write `out/index.html`, `out/report.md` and the PNGs they show; return the HTML path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = _Ctx({k: Path(v) for k, v in stages.items() if v is not None}, out, chats)
    return write_sections(title, [build(ctx) for build in _SECTIONS], out)


def write_sections(title: str, sections: list[Section], out: Path) -> Path:
    """`out/index.html` and `out/report.md` from the same blocks (figures already in `out`); the HTML path."""
    atomic_write_text(Path(out) / "report.md", _markdown(title, sections))
    return atomic_write_text(Path(out) / "index.html", _page(title, sections))


def _page(title: str, sections: list[Section]) -> str:
    toc = "".join(f'<li><a href="#{s.key}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "".join(
        f'<section id="{s.key}"><h2>{html.escape(s.title)}</h2>{"".join(map(_html, s.blocks))}</section>'
        for s in sections
    )
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><header><h1>{html.escape(title)}</h1>"
        f"<p class=muted>generated {stamp} by herd</p></header>"
        f"<nav><h2>Contents</h2><ol>{toc}</ol></nav>{body}</body></html>\n"
    )


def _markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}", "\n".join(f"- [{s.title}](#{s.key})" for s in sections)]
    for s in sections:
        parts.append(f'<a id="{s.key}"></a>\n\n## {s.title}\n\n' + "\n\n".join(map(_md, s.blocks)))
    return "\n\n".join(parts) + "\n"


_CSS = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:74em;margin:2em auto;padding:0 1em;color:#222}"
    "h1{margin-bottom:0}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}"
    ".muted{color:#777}nav ol{columns:2}"
    "table{border-collapse:collapse;margin:.8em 0;font-size:.92em}caption{text-align:left;color:#555;padding:.2em 0}"
    "td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f4f4f4}"
    "tbody tr:nth-child(even){background:#fafafa}"
    "figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#666;font-size:.9em}"
    "pre{background:#f7f7f7;padding:.6em;overflow-x:auto;white-space:pre-wrap}"
    "details{margin:.5em 0}summary{cursor:pointer;font-weight:600}"
    ".chat{border:1px solid #ddd;border-radius:6px;padding:.5em 1em;margin:1em 0}.prompt{font-weight:600}"
    ".pair{display:grid;grid-template-columns:1fr 1fr;gap:1em}.pair h4{margin:.2em 0}"
)


# ---------------------------------------------------------------------------------------------- reading


def _json(path: Path) -> Any:
    """The JSON at `path`, or None when it is missing or unreadable (a report never fails on one file)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _manifest(folder: Path | None) -> dict:
    return (_json(folder / MANIFEST_NAME) or {}) if folder else {}


def _counts(folder: Path | None) -> dict:
    """What a stage recorded: its manifest's `counts` (empty when there is no manifest)."""
    return _manifest(folder).get("counts") or {}


def _rec(counts: dict, key: str) -> Any:
    """A recorded number, or "not recorded" when the stage did not record it (a stage of older code)."""
    return counts.get(key, NOT_RECORDED)


def _curate_steps(root: Path) -> list[tuple[str, dict]]:
    """(step folder name, manifest) for 01_extract … 07_mix, in order."""
    return [(d.name, m) for d in sorted(root.glob("[0-9][0-9]_*")) if d.is_dir() and (m := _manifest(d))]


def _not_run(key: str, title: str, what: str = "") -> Section:
    return Section(key, title, [Paragraph(f"{what or key}: {NOT_RUN}.")])


def _not_recorded(stage: str, what: str, folder: Path) -> Paragraph:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return Paragraph(f"{what}: {NOT_RECORDED} (no {path}: {stage} has not finished).")
    return Paragraph(f"{what}: {NOT_RECORDED} in {path} (written by older code: rerun {stage}).")


def _declared(label: str, folder: Path, counts: dict, out: Path) -> list[Any]:
    """The figures and tables a stage declares in `counts["report"]`: {"figures": {file: caption},
    "tables": [{"head", "rows", "caption"}]}. Figures are files in the stage's folder, copied beside the
    page so the report folder stands alone."""
    declared = counts.get("report") or {}
    blocks: list[Any] = []
    for file, caption in (declared.get("figures") or {}).items():
        src = folder / file
        if not src.is_file():
            blocks.append(Paragraph(f"{label}: declared figure {src} is missing."))
            continue
        name = f"{label}_{Path(file).name}"
        shutil.copyfile(src, out / name)
        blocks.append(Figure(name, caption))
    for t in declared.get("tables") or []:
        blocks.append(Table(t.get("head", []), t.get("rows", []), t.get("caption", "")))
    return blocks


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    _plt().close(fig)
    return name


def _hms(seconds: float | None) -> str:
    if not seconds:
        return "–"
    s = round(seconds)
    return f"{s // 3600}h {s % 3600 // 60:02d}m {s % 60:02d}s" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


# ---------------------------------------------------------------------------------------------- run


def _wall_s(key: str, folder: Path) -> float | None:
    """Seconds a stage took, from its manifest; curation is the sum of its steps' manifests."""
    if key == "curate":
        return sum(float(m.get("wall_time_s") or 0) for _, m in _curate_steps(folder)) or None
    wall = _manifest(folder).get("wall_time_s")
    return float(wall) if wall else None


def _status(key: str, folder: Path | None) -> str:
    if folder is None:
        return NOT_RUN if key != "eval_base" else "not given"
    recorded = _curate_steps(folder) if key == "curate" else _manifest(folder)
    return "done" if recorded else f"{NOT_RECORDED} (no {MANIFEST_NAME})"


def _run_section(ctx: _Ctx) -> Section:
    rows, total = [], 0.0
    for key in STAGES:
        folder = ctx.dir(key)
        wall = _wall_s(key, folder) if folder else None
        total += wall or 0.0
        rows.append([key, _status(key, folder), _hms(wall), str(folder) if folder else "–"])
    return Section(
        "run",
        "Run",
        [
            Paragraph(f"Total wall time: {_hms(total)} over {sum(r[1] == 'done' for r in rows)} stages."),
            Table(["stage", "status", "wall time", "folder"], rows),
        ],
    )


# ---------------------------------------------------------------------------------------------- data


def _data_section(ctx: _Ctx) -> Section:
    title = "Data: corpus and curation funnel"
    blocks: list[Any] = _corpus_blocks(ctx.dir("corpus"))
    root = ctx.dir("curate")
    if root is None:
        return Section("data", title, [*blocks, Paragraph(f"curate: {NOT_RUN}.")])
    steps = _curate_steps(root)
    if not steps:
        return Section("data", title, [*blocks, Paragraph(f"curate: no manifests in {root}.")])
    rows = []
    for name, m in steps:
        c = m.get("counts", {})
        dropped = c.get("dropped") or {}
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(dropped.items(), key=lambda kv: -kv[1]))
        mb = round(c["kept_bytes"] / 1e6, 2) if "kept_bytes" in c else NOT_RECORDED
        rows.append(
            [
                name,
                _rec(c, "in"),
                _rec(c, "kept"),
                sum(dropped.values()),
                reasons or "–",
                mb,
                _hms(m.get("wall_time_s")),
            ]
        )
    blocks += [
        Paragraph(
            "Documents entering and leaving each curation step, with the reason every dropped document was dropped "
            "[P §3.1]."
        ),
        Table(["step", "in", "kept", "dropped", "dropped by reason", "MB kept", "wall"], rows),
        Figure(_funnel_png(steps, ctx.out), "Curation funnel: kept and dropped documents per step"),
    ]
    name, last = steps[-1]
    if name.endswith("_mix"):
        mix = last.get("counts", {}).get("mix")
        blocks += _mix_blocks(mix) if mix else [_not_recorded("curate", "Mix weights", root / name)]
    return Section("data", title, blocks)


def _corpus_blocks(folder: Path | None) -> list[Any]:
    if folder is None:
        return [Paragraph(f"corpus: {NOT_RUN}.")]
    counts = _counts(folder)
    if not counts:  # documents given as they are (`corpus.documents`), or a corpus of older code
        return [Paragraph(f"Corpus {folder}: no {MANIFEST_NAME}, so no counts were recorded.")]
    flat = [[k, json.dumps(v) if isinstance(v, dict | list) else v] for k, v in counts.items()]
    return [Table(["corpus", "count"], flat, caption=f"Bundled corpus {folder} (MANIFEST.json counts)")]


def _funnel_png(steps: list[tuple[str, dict]], out: Path) -> str:
    plt = _plt()
    reasons = sorted({r for _, m in steps for r in (m.get("counts", {}).get("dropped") or {})})
    colors = dict(zip(reasons, plt.get_cmap("tab20").colors * 3))
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(steps) + 1.6))
    names = [n for n, _ in steps][::-1]  # first step on top
    for y, (_, m) in enumerate(steps[::-1]):
        c = m.get("counts", {})
        kept = c.get("kept", 0)
        ax.barh(y, kept, color="#4c9a5a", label="kept" if y == 0 else None)
        left = kept
        for r, n in sorted((c.get("dropped") or {}).items()):
            ax.barh(y, n, left=left, color=colors[r], label=r)
            left += n
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="lower left", bbox_to_anchor=(1.01, 0))
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("documents")
    ax.set_title("Curation funnel (kept + dropped by reason)")
    return _save(fig, out, "funnel.png")


def _mix_blocks(mix: dict) -> list[Any]:
    keys = ("docs", "tokens", "available_share", "target_share", "weight", "epochs")
    rows = [[b, *(v.get(k) for k in keys)] for b, v in (mix.get("buckets") or {}).items()]
    blocks: list[Any] = [
        Table(
            ["bucket", "docs", "tokens", "available share", "target share", "weight", "epochs"],
            rows,
            caption="Mix toward the paper's 50% general / 25% math+reasoning / 17% code / 8% multilingual",
        )
    ]
    if mix.get("missing_buckets"):
        missing = ", ".join(mix["missing_buckets"])
        blocks.append(Paragraph(f"No documents for: {missing} (their share is redistributed)."))
    return blocks


# ---------------------------------------------------------------------------------------------- tokenizer


def _tokenizer_section(ctx: _Ctx) -> Section:
    title = "Tokenizer and token shards"
    tok_dir, tokens = ctx.dir("tokenizer"), ctx.dir("tokens")
    blocks: list[Any] = []
    if tok_dir is None:
        blocks.append(Paragraph(f"tokenizer: {NOT_RUN}."))
    else:
        c = _counts(tok_dir)
        keys = ("vocab_size", "n_ranks", "docs", "chars", "chars_per_token")
        blocks.append(
            Table(
                ["vocab size", "BPE ranks", "training docs", "training chars", "chars/token (training)"],
                [[_rec(c, k) for k in keys]],
            )
        )
    if tokens is None:
        return Section("tokenizer", title, [*blocks, Paragraph(f"tokens: {NOT_RUN}.")])
    return Section("tokenizer", title, blocks + _shard_blocks(tokens, ctx.out))


def _shard_blocks(tokens: Path, out: Path) -> list[Any]:
    c = _counts(tokens)
    sources = c.get("sources") or {}
    keys = ("docs", "tokens", "chars_per_token", "bytes_per_token")
    rows = [[src, *(_rec(v, k) for k in keys)] for src, v in sources.items()]
    split = c.get("tokens") or {}
    blocks: list[Any] = [
        Paragraph(
            "Compression is recorded by the tokenize stage over every document it encodes (BOS/EOS excluded); "
            "the paper reports 3.94 chars/token for Llama 3's tokenizer on English [P §3.2]."
        ),
        Table(
            ["source", "docs", "tokens", "chars/token", "bytes/token"],
            rows,
            caption=f"Token shards: {split.get('train', 0):,} train + {split.get('val', 0):,} held-out tokens",
        ),
    ]
    comp = {src: v for src, v in sources.items() if "chars_per_token" in v and "bytes_per_token" in v}
    if comp:
        blocks.append(Figure(_compression_png(comp, out), "Tokenizer compression per source"))
    else:
        blocks.append(_not_recorded("tokenize", "Compression", tokens))
    return blocks


def _compression_png(comp: dict[str, dict[str, float]], out: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = list(comp)
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [comp[n]["chars_per_token"] for n in names], 0.4, label="chars/token")
    ax.bar([i + 0.2 for i in x], [comp[n]["bytes_per_token"] for n in names], 0.4, label="bytes/token")
    ax.set_xticks(list(x), names)
    ax.set_title("Tokenizer compression per source")
    ax.legend(fontsize=8)
    return _save(fig, out, "compression.png")


# ---------------------------------------------------------------------------------------------- pretrain


def _mark(ax: Any, marks: list[list[Any]]) -> None:
    for x, label in marks:
        ax.axvline(x, color="#999", ls="--", lw=0.8)
        ax.text(
            x, 1.0, f" {label}", transform=ax.get_xaxis_transform(), rotation=90, va="top", fontsize=7, color="#555"
        )


def _loss_png(curve: dict, held_out: dict, marks: list[list[Any]], out: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(curve["tokens"], curve["loss"], lw=0.8, alpha=0.7, label="train")
    if held_out.get("tokens"):
        pairs = [(t, v) for t, v in zip(held_out["tokens"], held_out["loss"]) if v is not None]
        ax.plot([t for t, _ in pairs], [v for _, v in pairs], "o-", ms=3, label="held out")
    _mark(ax, marks)
    ax.set_xlabel("tokens")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("Pretraining loss")
    ax.legend(fontsize=8)
    return _save(fig, out, "pretrain_loss.png")


def _schedule_png(curve: dict, marks: list[list[Any]], out: Path) -> str:
    plt = _plt()
    fig, axes = plt.subplots(3, 1, figsize=(10, 6.5), sharex=True)
    for ax, (key, label) in zip(
        axes, (("lr", "learning rate"), ("batch_tokens", "batch (tokens)"), ("seq_len", "sequence length"))
    ):
        # A point holds the step that ended at its `tokens`: its value applies to the interval before.
        ax.plot(curve["tokens"], curve.get(key) or [None] * len(curve["tokens"]), lw=1.2, drawstyle="steps-pre")
        ax.set_ylabel(label)
        _mark(ax, marks)
    axes[-1].set_xlabel("tokens")
    axes[0].set_title("Schedules vs tokens seen")
    return _save(fig, out, "pretrain_schedules.png")


def _pretrain_section(ctx: _Ctx) -> Section:
    title = "Pretraining: loss and schedules"
    run = ctx.dir("pretrain")
    if run is None:
        return _not_run("pretrain", title)
    c = _counts(run)
    keys = ("steps", "tokens", "held_out_loss_last", "unigram_entropy", "skipped", "rollbacks")
    blocks: list[Any] = [
        Table(
            ["steps", "tokens", "held-out loss (last)", "unigram entropy", "skipped steps", "rollbacks"],
            [[_rec(c, k) for k in keys]],
            caption="The unigram entropy of the training tokens is the loss of a model that ignores context",
        )
    ]
    curve, marks = c.get("curve") or {}, c.get("boundaries") or []
    if curve.get("tokens"):
        blocks += [
            Figure(
                _loss_png(curve, c.get("held_out_curve") or {}, marks, ctx.out),
                "Train and held-out loss vs tokens; dashed lines mark "
                "sequence/batch ramp steps, long-context stages and the start of annealing [P §3.4]",
            ),
            Figure(_schedule_png(curve, marks, ctx.out), "Learning rate, batch and sequence length vs tokens"),
            Table(["tokens", "change"], [[int(x), label] for x, label in marks], caption="Stage boundaries"),
        ]
    else:
        blocks.append(_not_recorded("pretrain", "Loss curve", run))
    if c.get("long_context"):
        rows = c["long_context"]
        head = sorted({k for r in rows for k in r})
        blocks.append(Table(head, [[r.get(k) for k in head] for r in rows], caption="Long-context stages [P §3.4.2]"))
    return Section("pretrain", title, blocks)


def _anneal_section(ctx: _Ctx) -> Section:
    title = "Annealing and checkpoint averaging"
    run = ctx.dir("pretrain")
    if run is None:
        return _not_run("anneal", title, "pretrain")
    c = _counts(run)
    if "held_out_loss_last" not in c:
        return Section("anneal", title, [_not_recorded("pretrain", "Held-out losses", run)])
    if "held_out_loss_averaged" not in c:
        text = "No annealing snapshots in this run: the base model is the final weights."
        return Section("anneal", title, [Paragraph(text)])
    steps, losses = c.get("averaged_snapshots") or [], c.get("held_out_loss_snapshots") or []
    rows = [[f"snapshot {i + 1}", st, loss] for i, (st, loss) in enumerate(zip(steps, losses))]
    rows += [
        ["final weights", c.get("steps"), c["held_out_loss_last"]],
        ["Polyak average (base model)", f"{len(steps)} snapshots", c["held_out_loss_averaged"]],
    ]
    blocks: list[Any] = [
        Paragraph(
            "The learning rate decays linearly to 0 with high-quality data up-sampled; the base model is the "
            "average of the checkpoints taken meanwhile [P §3.4.3]."
        ),
        Table(["model", "step", "held-out loss"], rows),
    ]
    if all(isinstance(r[2], int | float) for r in rows):  # no held-out shards: no losses to draw
        blocks.append(Figure(_anneal_png(rows, ctx.out), "Held-out loss: annealing snapshots vs their average"))
    return Section("anneal", title, blocks)


def _anneal_png(rows: list[list[Any]], out: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    labels, values = [str(r[0]) for r in rows], [float(r[2]) for r in rows]
    colors = ["#8aa9c9"] * (len(rows) - 1) + ["#d9822b"]
    ax.barh(range(len(rows)), values, color=colors)
    ax.set_yticks(range(len(rows)), labels)
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.5 or abs(hi) * 0.01 or 0.01
    ax.set_xlim(lo - pad, hi + pad)  # differences are small: zoom in on them
    ax.invert_yaxis()
    ax.set_xlabel("held-out loss")
    return _save(fig, out, "anneal_average.png")


# ---------------------------------------------------------------------------------------------- posttrain


def _posttrain_section(ctx: _Ctx) -> Section:
    title = "Post-training by round"
    run = ctx.dir("posttrain")
    if run is None:
        return _not_run("posttrain", title)
    c = _counts(run)
    if "metrics" not in c:
        return Section("posttrain", title, [_not_recorded("posttrain", "Per-round metrics", run)])
    rows = c["metrics"]
    blocks: list[Any] = [
        Paragraph(
            f"{c.get('rounds', len(rows))} rounds of reward model → rejection sampling → SFT → DPO [P §4.1]; "
            f"final model: {c.get('final_model', '–')}."
        )
    ]
    if rows:
        cols = [k for k in rows[0] if any(r.get(k) is not None for r in rows)]
        blocks.append(Table(cols, [[r.get(k) for k in cols] for r in rows], caption="Held-out metrics per round"))
    blocks += _declared("posttrain", run, c, ctx.out)
    blocks += _capability_blocks(c)
    walls = [[w.get("round"), *(w.get(k) for k in ("rm", "rs", "sft", "dpo"))] for w in c.get("round_wall_s") or []]
    if any(any(w[1:]) for w in walls):
        blocks.append(Table(["round", "RM s", "RS s", "SFT s", "DPO s"], walls, caption="Wall time per component"))
    return Section("posttrain", title, blocks)


def _capability_blocks(c: Mapping[str, Any]) -> list[Any]:
    """The SFT category mix per round against Table 7, and each capability pipeline's data and evaluation."""
    blocks: list[Any] = []
    mixes = [m for m in c.get("mix") or [] if m.get("realised")]
    if mixes:
        cats = sorted({k for m in mixes for k in (*m["realised"], *m.get("target", {}))})
        rows = [["target (Table 7)", *(mixes[0].get("target", {}).get(k) for k in cats)]]
        rows += [[f"round {m['round']}", *(m["realised"].get(k, 0.0) for k in cats)] for m in mixes]
        blocks.append(Table(["SFT mix, % of dialogs", *cats], rows, caption="SFT category mix [P §4.2.2, Table 7]"))
    caps = c.get("capabilities") or []
    if caps:
        rows = [
            [r["capability"], "base" if r["round"] == 0 else r["round"], r.get("kept"), r.get("dropped"),
             r.get("metric"), _pm(r.get("value"), r.get("ci95")), r.get("n")]
            for r in caps
        ]  # fmt: skip
        cols = ["capability", "model", "kept", "dropped", "metric", "value ± 95% CI", "n"]
        blocks.append(Table(cols, rows, caption="Capability pipelines: data kept per round and evaluation [P §4.3]"))
    return blocks


def _pm(value: float | None, ci: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} ± {100 * (ci or 0):.1f}"


# ---------------------------------------------------------------------------------------------- eval


def _scores(counts: dict) -> dict[str, dict]:
    return {r["task"]: r for r in counts.get("results") or [] if "task" in r}


def _pct(r: dict | None) -> str:
    if not r or not isinstance(r.get("score"), int | float):
        return "–"
    ci = r.get("ci95")
    return f"{100 * r['score']:.1f} ± {100 * ci:.1f}" if ci is not None else f"{100 * r['score']:.1f}"


def _delta(chat: dict | None, base: dict | None) -> str:
    if _pct(chat) == "–" or _pct(base) == "–":
        return "–"
    return f"{100 * (chat['score'] - base['score']):+.1f}"


def _eval_section(ctx: _Ctx) -> Section:
    title = "Evaluation"
    found = {label: d for label, d in (("chat", ctx.dir("eval")), ("base", ctx.dir("eval_base"))) if d}
    if not found:
        return _not_run("eval", title)
    counts = {label: _counts(d) for label, d in found.items()}
    blocks: list[Any] = [Paragraph("Scores in %, with the paper's 95% CI = 1.96·√(S(1−S)/N) [P §5].")]
    if "chat" not in found:
        blocks.append(Paragraph(f"Chat model: {NOT_RUN}."))
    for label in [k for k, c in counts.items() if "results" not in c]:
        blocks.append(_not_recorded("eval", f"Scores of the {label} model", found[label]))
        del counts[label]
    scores = {label: _scores(c) for label, c in counts.items()}
    if scores:
        blocks.append(_scores_table(scores))
    for label, c in counts.items():
        blocks += _robustness_blocks(label, found[label], c, ctx.out)
    return Section("eval", title, blocks)


def _scores_table(scores: dict[str, dict[str, dict]]) -> Table:
    both = "chat" in scores and "base" in scores
    head = [
        "task",
        "metric",
        "N",
        *(f"{label} (%, ± 95% CI)" for label in scores),
        *(["Δ chat − base"] if both else []),
    ]
    rows = []
    for task in dict.fromkeys(t for s in scores.values() for t in s):
        found = [s.get(task) for s in scores.values()]
        r = next(x for x in found if x)
        delta = [_delta(scores["chat"].get(task), scores["base"].get(task))] if both else []
        rows.append([task, r.get("metric"), r.get("n"), *map(_pct, found), *delta])
    return Table(head, rows)


def _robustness_blocks(label: str, folder: Path, counts: dict, out: Path) -> list[Any]:
    rows = counts.get("robustness") or []
    if not rows:
        return []
    stage = "eval" if label == "chat" else "eval_base"
    return [
        Table(
            ["axis", "condition", "score (%)", "N", "top label %"],
            [[r.get("axis"), r.get("condition"), _pct(r), r.get("n"), r.get("top_label_pct")] for r in rows],
            caption=f"Robustness of the {label} model: label bias, label variants, answer order, prompt format "
            "[P §5.1.2]",
        ),
        *_declared(stage, folder, counts, out),
    ]


def _contamination_section(ctx: _Ctx) -> Section:
    title = "Contamination"
    found = [(label, d) for label, d in (("chat", ctx.dir("eval")), ("base", ctx.dir("eval_base"))) if d]
    if not found:
        return _not_run("contamination", title, "eval")
    blocks: list[Any] = [
        Paragraph(
            "An example is contaminated when a share T of its tokens lies in 8-grams seen in the "
            "pretraining shards; T is chosen per task to maximise a significant estimated gain, "
            "the full-set score minus the clean-subset score [P §5.1.4]."
        )
    ]
    keys = ("task", "n", "threshold", "contaminated_pct", "score_full", "score_clean", "gain", "z")
    for label, folder in found:
        c = _counts(folder)
        if "results" not in c:
            blocks.append(_not_recorded("eval", f"Contamination of the {label} model", folder))
        elif not c.get("contamination"):
            blocks.append(Paragraph(f"{label} model: contamination analysis not enabled."))
        else:
            rows = [[*(r.get(k) for k in keys), "yes" if r.get("significant") else "no"] for r in c["contamination"]]
            head = ["task", "N", "T", "% contaminated", "score full", "score clean", "gain", "z", "significant"]
            blocks.append(Table(head, rows, caption=f"{label} model"))
    return Section("contamination", title, blocks)


# ---------------------------------------------------------------------------------------------- safety


def _safety_section(ctx: _Ctx) -> Section:
    title = "Safety"
    folder, mem = ctx.dir("safety"), ctx.dir("memorization")
    if folder is None and mem is None:
        return _not_run("safety", title)
    blocks: list[Any] = [
        Paragraph(
            "Violation rate (VR, adversarial prompts, judged by the judge guard) and false refusal rate (FRR, "
            "borderline prompts, refusal detector) of the chat model alone and behind the input/output guard "
            "and Code Shield, in %, ± 95% CI [P §5.4, Table 25's shape]."
        )
    ]
    counts = _counts(folder)
    if folder is not None and "by_category" not in counts:
        blocks.append(_not_recorded("safety", "VR/FRR by category", folder))
    elif folder is not None:
        keys = ("vr", "vr_guarded", "frr", "frr_guarded")
        rows = [[r["category"], *(_pm(r.get(k), r.get(f"{k}_ci95")) for k in keys), r.get("vr_n", "–"),
                 r.get("frr_n", "–")] for r in counts["by_category"]]  # fmt: skip
        head = ["category", "VR", "VR + guard", "FRR", "FRR + guard", "N adversarial", "N borderline"]
        blocks.append(Table(head, rows, caption=f"blocked by the guard: {counts.get('blocked') or {}}"))
    m = _counts(mem)
    if mem is not None and "inclusion" not in m:
        blocks.append(_not_recorded("safety", "Memorization", mem))
    elif mem is not None:
        inc, exact = m["inclusion"], m.get("exact") or {}
        blocks.append(Table(
            ["n-gram", "inclusion rate (%)", "exact continuation (%)", "N prompts", "prefix tokens"],
            [[m.get("n"), _pm(inc.get("rate"), inc.get("ci95")), _pm(exact.get("rate"), exact.get("ci95")),
              inc.get("n"), m.get("prefix_len")]],
            caption="Verbatim inclusion of greedy continuations of training prefixes in the training shards "
            "[P Table 24: 405B 1.13% at 50-grams]",
        ))  # fmt: skip
    return Section("safety", title, blocks)


# ---------------------------------------------------------------------------------------------- vision


def _vision_section(ctx: _Ctx) -> Section:
    title = "Vision"
    folder = ctx.dir("vision")
    if folder is None:
        return _not_run("vision", title)
    blocks: list[Any] = [
        Paragraph(
            "Image encoder + gated cross-attention adapters on the frozen language model, trained on the "
            "generated image-text pairs; held-out VQA against blind baselines, ± 95% CI [P §7]."
        )
    ]
    counts = _counts(folder)
    tables = _declared("vision", folder, counts, ctx.out)
    return Section("vision", title, blocks + (tables or [_not_recorded("vision", "VQA tables", folder)]))


# ---------------------------------------------------------------------------------------------- speech


def _speech_section(ctx: _Ctx) -> Section:
    title = "Speech"
    folder = ctx.dir("speech")
    if folder is None:
        return _not_run("speech", title)
    asr = _counts(folder).get("asr")
    if not asr:
        return Section("speech", title, [_not_recorded("speech", "ASR WER", folder)])
    blocks: list[Any] = [
        Paragraph(
            "Word error rate of greedy transcripts of espeak-ng speech through the Conformer encoder, the adapter "
            "and the frozen LM, on sentences never trained on, spoken in trained voices (test_sentences) and in "
            "voices never trained on (test_voices); [95% bootstrap CI] [P §8]."
        )
    ]
    rows = [[split, _wer(r.get("untrained")), _wer(r.get("trained")), (r.get("trained") or {}).get("n")]
            for split, r in asr.items()]  # fmt: skip
    blocks.append(Table(["split", "WER untrained", "WER trained", "N utterances"], rows))
    return Section("speech", title, blocks)


def _wer(r: dict | None) -> str:
    return "–" if not r else f"{r['wer']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"


# ---------------------------------------------------------------------------------------------- chats


def _chats_section(ctx: _Ctx) -> Section:
    title = "Sample chats: before and after post-training"
    if not ctx.chats:
        return Section("chats", title, [Paragraph("No sample chats were given.")])
    blocks = [Chat(str(c.get("prompt", "")), str(c.get("base", "")), str(c.get("chat", ""))) for c in ctx.chats]
    return Section("chats", title, blocks)


# ---------------------------------------------------------------------------------------------- lineage


def _manifests(key: str, folder: Path) -> list[tuple[str, Path]]:
    """(label, MANIFEST.json) for a stage: its own and its sub-stages' (curation steps, post-training
    rounds and components), never inside checkpoints or scratch folders."""
    found = [
        folder / MANIFEST_NAME,
        *sorted(folder.glob(f"*/{MANIFEST_NAME}")),
        *sorted(folder.glob(f"*/*/{MANIFEST_NAME}")),
    ]
    skip = {"_work", "_logs", "checkpoints", "samples", "ngram-index"}
    out = []
    for p in found:
        rel = p.parent.relative_to(folder)
        if p.is_file() and not skip & set(rel.parts):
            out.append((f"{key}/{rel}" if rel.parts else key, p))
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lineage_section(ctx: _Ctx) -> Section:
    found = [(label, p) for key in STAGES if (d := ctx.dir(key)) for label, p in _manifests(key, d)]
    title = "Lineage"
    if not found:
        return Section("lineage", title, [Paragraph("No MANIFEST.json found in any stage folder.")])
    by_hash = {_sha(p): label for label, p in found}
    folders = {k: d.resolve() for k in STAGES if (d := ctx.dir(k))}
    blocks: list[Any] = [
        Paragraph(
            "Each stage's MANIFEST.json records its resolved config (hashed), its inputs with content hashes and the "
            "hash of each input's own MANIFEST.json, package versions and wall time. An upstream hash that matches a "
            "manifest of this run is named, so the chain can be followed back to the raw files."
        )
    ]
    for label, path in found:
        blocks.append(_lineage_block(label, path, by_hash, folders))
    return Section("lineage", title, blocks)


def _lineage_block(label: str, path: Path, by_hash: dict[str, str], folders: dict[str, Path]) -> Details:
    m = _json(path) or {}
    inputs = m.get("inputs") or []
    rows = [[i.get("path"), (i.get("sha256") or "")[:16], _upstream(i, by_hash, folders)] for i in inputs[:8]]
    if len(inputs) > 8:
        rows.append([f"… and {len(inputs) - 8} more inputs", "", ""])
    versions = ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items())
    meta = [
        [
            m.get("stage"),
            (m.get("config_hash") or "")[:16],
            _sha(path)[:16],
            m.get("created"),
            _hms(m.get("wall_time_s")),
            versions,
        ]
    ]
    return Details(
        f"{label} — {path}",
        [
            Table(["stage", "config hash", "manifest sha256", "created", "wall", "versions"], meta),
            Table(["input", "sha256", "upstream manifest"], rows) if rows else Paragraph("No inputs recorded."),
        ],
    )


def _upstream(record: dict, by_hash: dict[str, str], folders: dict[str, Path]) -> str:
    """Name where an input came from: a manifest of this run (by hash), else a stage folder that holds it."""
    sha = record.get("manifest")
    if sha and sha in by_hash:
        return f"{sha[:16]} ← {by_hash[sha]}"
    path = Path(str(record.get("path", ""))).resolve()
    inside = [k for k, d in folders.items() if path == d or d in path.parents]
    if inside:
        return f"{sha[:16] + ' ' if sha else ''}(in the {inside[0]} folder)"
    return f"{sha[:16]} (outside this report)" if sha else "– (raw input)"


_SECTIONS: Sequence[Callable[[_Ctx], Section]] = (
    _run_section,
    _data_section,
    _tokenizer_section,
    _pretrain_section,
    _anneal_section,
    _posttrain_section,
    _eval_section,
    _contamination_section,
    _safety_section,
    _vision_section,
    _speech_section,
    _chats_section,
    _lineage_section,
)


def image_files(index_html: Path) -> Iterable[Path]:
    """The image files an index.html refers to (for checks that the folder is self-contained)."""
    import re

    text = Path(index_html).read_text(encoding="utf-8")
    return [Path(index_html).parent / html.unescape(src) for src in re.findall(r'<img src="([^"]+)"', text)]
