"""The run report renders what stages recorded: a run folder of hand-written MANIFEST.json files (and the
PNGs they declare), with no documents, shards, metrics or summaries, shows every section; numbers an older
stage did not record say so instead of being recomputed."""

from __future__ import annotations

import ast
import hashlib
import json
import re
from pathlib import Path

import pytest

import herd.recipe.report as report_module
from herd.recipe.report import image_files, write_report

SECTIONS = ("run", "data", "tokenizer", "pretrain", "anneal", "posttrain", "eval", "contamination", "chats", "lineage")
TOKENIZER = {"vocab_size": 1024, "n_ranks": 1020, "docs": 30, "chars": 9000, "chars_per_token": 3.7}
PNG = bytes.fromhex("89504e470d0a1a0a")  # a PNG signature is enough for a file the report only copies


def _manifest(folder: Path, stage: str, counts: dict, wall: float, inputs: list[dict] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "MANIFEST.json"
    m = {
        "stage": stage,
        "inputs": inputs or [],
        "config": {},
        "config_hash": "c0ffee" * 8,
        "counts": counts,
        "outputs": [],
        "versions": {"python": "3.11", "herd": "0.1.0"},
        "wall_time_s": wall,
        "created": "2026-01-01T00:00:00+00:00",
    }
    path.write_text(json.dumps(m))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _curate(root: Path) -> Path:
    steps = [("01_extract", 100, {"empty": 3, "invalid_utf8": 2}), ("02_mix", 95, {"minhash_duplicate": 10})]
    for name, n_in, dropped in steps:
        counts = {"in": n_in, "kept": n_in - sum(dropped.values()), "dropped": dropped, "kept_bytes": 1e6}
        _manifest(root / name, name[3:], counts, 2.0)
    mix = {"buckets": {"general": {"docs": 85, "tokens": 1000, "weight": 1.0}}, "missing_buckets": ["math"]}
    counts["mix"] = mix
    _manifest(root / "02_mix", "mix", counts, 2.0)
    return root


def _tokens(folder: Path) -> Path:
    sources = {
        "code": {"docs": 10, "tokens": 900, "chars_per_token": 2.5, "bytes_per_token": 2.6},
        "general": {"docs": 20, "tokens": 1500, "chars_per_token": 3.9, "bytes_per_token": 4.0},
    }
    counts = {"in": 30, "kept": 30, "dropped": {"empty": 0}, "tokens": {"train": 2200, "val": 200}}
    _manifest(folder, "tokenize", counts | {"sources": sources}, 1.0)
    return folder


def _pretrain(run: Path, tokens: Path) -> Path:
    tokens_seen = [4096 * i for i in range(1, 11)]
    counts = {
        "steps": 10,
        "tokens": 40960,
        "skipped": 0,
        "rollbacks": 0,
        "held_out_loss_last": 7.1,
        "unigram_entropy": 6.0,
        "long_context": [{"seq_len": 512, "start": 20480, "passed": True}],
        "held_out_loss_averaged": 7.05,
        "held_out_loss_snapshots": [7.2, 7.1],
        "averaged_snapshots": [9, 10],
        "curve": {
            "tokens": tokens_seen,
            "loss": [8 - 0.1 * i for i in range(1, 11)],
            "lr": [1e-3] * 10,
            "batch_tokens": [4096] * 10,
            "seq_len": [256] * 4 + [512] * 6,
        },
        "held_out_curve": {"tokens": [20480, 40960], "loss": [7.6, 7.1]},
        "boundaries": [[16384, "seq 512"], [32768, "anneal starts"]],
    }
    upstream = {"path": str(tokens), "sha256": "ab" * 32, "manifest": _sha(tokens / "MANIFEST.json")}
    _manifest(run, "pretrain", counts, 30.0, [upstream])
    return run


def _posttrain(out: Path) -> Path:
    metrics = [{"round": r, "rm_accuracy": 0.6 + r / 100, "sft_loss": 2.0 - r / 10, "prune_kept": None} for r in (1, 2)]
    counts = {
        "rounds": 2,
        "final_model": "x",
        "metrics": metrics,
        "round_wall_s": [{"round": r, "rm": 1.0, "sft": 2.0} for r in (1, 2)],
        "mix": [{"round": 1, "target": {"code": 14.89, "general": 52.66}, "realised": {"code": 21.9, "general": 78.1}}],
        "capabilities": [
            {"capability": "math", "round": r, "metric": "accuracy", "value": v, "ci95": 0.05, "n": 100, "kept": k}
            for r, v, k in ((0, 0.12, None), (1, 0.31, 57))
        ],
        "report": {
            "figures": {"metrics.png": "Held-out metrics by round"},
            "tables": [{"head": ["round", "dialogs kept"], "rows": [[1, 306]], "caption": "Pruning by quality"}],
        },
    }
    _manifest(out, "posttrain", counts, 12.0)
    (out / "metrics.png").write_bytes(PNG)
    return out


def _eval(out: Path, score: float, robustness: bool) -> Path:
    counts: dict = {
        "arc_easy": 30,
        "model": "herd",
        "results": [{"task": "arc_easy", "metric": "acc_norm", "score": score, "n": 30, "ci95": 0.15}],
        "report": {"figures": {}},
    }
    if robustness:
        row = {"axis": "label_bias", "condition": "AAAA", "score": 0.25, "n": 8, "top_label_pct": 90.0, "ci95": 0.3}
        counts["robustness"] = [row]
        counts["report"]["figures"]["robustness.png"] = "Robustness (herd)"
        out.mkdir(parents=True, exist_ok=True)
        (out / "robustness.png").write_bytes(PNG)
        counts["contamination"] = [
            {
                "task": "arc_easy",
                "n": 30,
                "threshold": 0.2,
                "contaminated_pct": 3.3,
                "score_full": 0.3,
                "score_clean": 0.28,
                "gain": 0.02,
                "z": 2.3,
                "significant": True,
            }
        ]
    _manifest(out, "eval", counts, 5.0)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("run")
    tokens = _tokens(root / "tokens")
    stages = {
        "corpus": _manifest(root / "corpus", "corpus", {"files": {"sotu": 9}, "documents": 9}, 1.0).parent,
        "curate": _curate(root / "curate"),
        "tokenizer": _manifest(root / "tokenizer", "tokenizer", TOKENIZER, 2.0).parent,
        "tokens": tokens,
        "pretrain": _pretrain(root / "pretrain", tokens),
        "posttrain": _posttrain(root / "posttrain"),
        "eval": _eval(root / "eval", 0.4, robustness=True),
        "eval_base": _eval(root / "eval_base", 0.3, robustness=False),
    }
    return stages


@pytest.fixture(scope="module")
def report(run: dict[str, Path], tmp_path_factory) -> Path:
    chats = [{"prompt": "What is <b>2+3</b>?", "base": "2+3 is", "chat": "5"}]
    return write_report(run, tmp_path_factory.mktemp("out") / "report", chats, title="test run")


def test_the_run_folder_holds_only_manifests_and_declared_figures(run: dict[str, Path]) -> None:
    files = {p.name for d in run.values() for p in d.rglob("*") if p.is_file()}
    assert files == {"MANIFEST.json", "metrics.png", "robustness.png"}


def test_page_is_complete_and_offline(report: Path) -> None:
    text = report.read_text()
    assert report.name == "index.html" and (report.parent / "report.md").is_file()
    for key in SECTIONS:
        assert f'<section id="{key}">' in text and f'href="#{key}"' in text
    names = {p.name for p in image_files(report)}
    drawn = ("funnel", "compression", "pretrain_loss", "pretrain_schedules", "anneal_average")
    assert names >= {f"{n}.png" for n in drawn} | {"posttrain_metrics.png", "eval_robustness.png"}
    for p in image_files(report):
        assert p.is_file() and p.parent == report.parent, p  # relative names: the folder can be copied
    assert "<script" not in text and not re.search(r'(src|href)="https?:', text)
    assert "not recorded" not in text


def test_sections_render_the_recorded_numbers(report: Path) -> None:
    text = report.read_text()
    assert "minhash_duplicate 10" in text  # drop reasons from the curation manifests
    assert "No documents for: math" in text  # the mix stage's recorded weights
    assert "<td>3.9</td><td>4</td>" in text  # compression recorded by the tokenize stage
    assert "seq 512" in text and "anneal starts" in text  # boundaries recorded by pretraining
    assert "snapshot 2" in text and "Polyak average" in text  # per-snapshot held-out losses
    assert "<th>passed</th>" in text and "Long-context stages" in text  # recorded long-context gates
    assert "40.0 ± 15.0" in text and "30.0 ± 15.0" in text and "+10.0" in text  # chat vs base with CIs
    assert "base model: contamination analysis not enabled." in text
    assert "<caption>Pruning by quality</caption>" in text and "<td>306</td>" in text  # a table a stage declared
    assert "<td>round 1</td><td>21.9</td><td>78.1</td>" in text  # the realised SFT category mix
    assert "<td>math</td><td>base</td>" in text and "<td>31.0 ± 5.0</td>" in text  # a capability's eval
    assert "&lt;b&gt;2+3&lt;/b&gt;" in text  # chats are escaped
    assert "← tokens" in text  # the pretrain manifest's upstream hash is traced to the token shards' manifest
    # 1 corpus + 2 + 2 curate + 2 tokenizer + 1 tokens + 30 pretrain + 12 posttrain + 5 + 5 eval
    assert "Total wall time: 1m 00s over 8 stages" in text
    md = (report.parent / "report.md").read_text()
    assert "| arc_easy | acc_norm | 30 | 40.0 ± 15.0 | 30.0 ± 15.0 | +10.0 |" in md


def test_older_manifests_say_not_recorded(tmp_path: Path) -> None:
    """Manifests of stages that recorded only their old counts: each missing number says so, nothing is
    recomputed (there is nothing on disk to recompute it from)."""
    sources = {"general": {"docs": 20, "tokens": 1500}}
    stages = {
        "corpus": tmp_path / "corpus",  # a folder of documents without a manifest
        "curate": _manifest(tmp_path / "curate" / "01_mix", "mix", {"in": 5, "kept": 5, "dropped": {}}, 1.0).parents[1],
        "tokens": _manifest(tmp_path / "tokens", "tokenize", {"sources": sources}, 1.0).parent,
        "pretrain": _manifest(tmp_path / "pretrain", "pretrain", {"steps": 10, "tokens": 40960}, 1.0).parent,
        "posttrain": _manifest(tmp_path / "posttrain", "posttrain", {"rounds": 2, "final_model": "x"}, 1.0).parent,
        "eval": _manifest(tmp_path / "eval", "eval", {"arc_easy": 30}, 1.0).parent,
    }
    stages["corpus"].mkdir()
    text = write_report(stages, tmp_path / "report").read_text()
    assert f"Corpus {stages['corpus']}: no MANIFEST.json, so no counts were recorded." in text
    for what in (
        "Mix weights",
        "Compression",
        "Loss curve",
        "Held-out losses",
        "Per-round metrics",
        "Scores of the chat model",
        "Contamination of the chat model",
    ):
        assert f"{what}: not recorded in" in text, what
    assert "compression.png" not in text and "pretrain_loss.png" not in text


def test_missing_stages_say_not_run(tmp_path: Path) -> None:
    empty = write_report({"tokenizer": tmp_path / "missing"}, tmp_path / "empty")
    text = empty.read_text()
    for what in ("curate", "pretrain", "posttrain", "eval", "tokenizer", "tokens"):
        assert f"{what}: not run." in text, what
    assert list(image_files(empty)) == []


def test_a_declared_figure_that_is_missing_is_named(tmp_path: Path) -> None:
    counts = {"rounds": 1, "metrics": [{"round": 1}], "report": {"figures": {"gone.png": "a plot"}}}
    post = _manifest(tmp_path / "posttrain", "posttrain", counts, 1.0).parent
    text = write_report({"posttrain": post}, tmp_path / "report").read_text()
    assert f"posttrain: declared figure {post / 'gone.png'} is missing." in text


def test_the_report_imports_no_stage_code() -> None:
    """Rendering needs no tokenizer, shards, trainer or post-training code: only herd.core."""
    tree = ast.parse(Path(report_module.__file__).read_text())
    herd = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("herd")}
    assert herd <= {"herd.core.io"}, herd
