"""The run report from small hand-written stage folders (and real token shards): offline, complete, honest
about what did not run."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from herd.recipe.report import image_files, write_report

SECTIONS = ("run", "data", "tokenizer", "pretrain", "anneal", "posttrain", "eval", "contamination", "chats", "lineage")


def _write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def _manifest(folder: Path, stage: str, inputs: list[dict], counts: dict, wall: float) -> Path:
    return _write(
        folder / "MANIFEST.json",
        {
            "stage": stage,
            "inputs": inputs,
            "config": {},
            "config_hash": "c0ffee" * 8,
            "counts": counts,
            "outputs": [],
            "versions": {"python": "3.11", "herd": "0.1.0"},
            "wall_time_s": wall,
            "created": "2026-01-01T00:00:00+00:00",
        },
    )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _curate(root: Path) -> Path:
    steps = [("01_extract", 100, {"empty": 3, "invalid_utf8": 2}), ("03_minhash", 95, {"minhash_duplicate": 10})]
    for name, n_in, dropped in steps:
        kept = n_in - sum(dropped.values())
        _manifest(root / name, name[3:], [], {"in": n_in, "kept": kept, "dropped": dropped, "kept_bytes": 1e6}, 2.0)
    _write(root / "07_mix" / "mix_weights.json", {"buckets": {"general": {"docs": 85, "tokens": 1000, "weight": 1.0}}})
    return root


def _pretrain(run: Path, tokens: Path) -> Path:
    records = [
        {
            "kind": "train",
            "step": i,
            "tokens": 4096 * i,
            "loss": 8 - 0.1 * i,
            "lr": 1e-3,
            "batch_tokens": 4096,
            "seq_len": 256 if i < 5 else 512,
            "phase": "main" if i < 8 else "anneal",
        }
        for i in range(1, 11)
    ] + [{"kind": "val", "step": 5, "tokens": 20480, "loss": 7.6}, {"kind": "val", "step": 10, "tokens": 40960}]
    _write(run / "metrics.jsonl", "\n".join(map(json.dumps, records)) + "\n{partial")
    _write(
        run / "summary.json",
        {
            "steps": 10,
            "tokens": 40960,
            "held_out_loss_last": 7.1,
            "unigram_entropy": 6.0,
            "long_context": [],
            "held_out_loss_averaged": 7.05,
            "held_out_loss_snapshots": [7.2, 7.1],
            "averaged_snapshots": [9, 10],
        },
    )
    upstream = {"path": str(tokens), "sha256": "ab" * 32, "manifest": _sha(tokens / "MANIFEST.json")}
    _manifest(run, "pretrain", [upstream], {"steps": 10}, 30.0)
    return run


def _posttrain(out: Path) -> Path:
    metrics = [{"round": r, "rm_accuracy": 0.6 + r / 100, "sft_loss": 2.0 - r / 10, "prune_kept": None} for r in (1, 2)]
    rounds = [{"round": r, "wall_s": {"rm": 1.0, "sft": 2.0}} for r in (1, 2)]
    _write(out / "summary.json", {"rounds": rounds, "metrics": metrics, "final_model": "x", "wall_s": 12.0})
    return out


def _eval(out: Path, score: float) -> Path:
    _write(
        out / "results.json",
        {
            "results": [{"task": "arc_easy", "metric": "acc_norm", "score": score, "n": 30, "ci95": 0.15}],
            "robustness": [
                {"axis": "label_bias", "condition": "AAAA", "score": 0.25, "n": 8, "top_label_pct": 90.0, "ci95": 0.3}
            ],
            "contamination": [
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
            ],
        },
    )
    _manifest(out, "eval", [], {"arc_easy": 30}, 5.0)
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory, token_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("run")
    stages = {
        "curate": _curate(root / "curate"),
        "tokens": token_dir,
        "pretrain": _pretrain(root / "pretrain", token_dir),
        "posttrain": _posttrain(root / "posttrain"),
        "eval": _eval(root / "eval", 0.4),
        "eval_base": _eval(root / "eval_base", 0.3),
        "tokenizer": root / "missing",  # given but never written: not run
    }
    chats = [{"prompt": "What is <b>2+3</b>?", "base": "2+3 is", "chat": "5"}]
    return write_report(stages, root / "report", chats, title="test run")


def test_page_is_complete_and_offline(report: Path) -> None:
    text = report.read_text()
    assert report.name == "index.html" and (report.parent / "report.md").is_file()
    for key in SECTIONS:
        assert f'<section id="{key}">' in text and f'href="#{key}"' in text
    images = list(image_files(report))
    names = ("funnel", "compression", "pretrain_loss", "pretrain_schedules", "anneal_average", "posttrain_metrics")
    assert {p.name for p in images} >= {f"{n}.png" for n in names}
    for p in images:
        assert p.is_file() and p.parent == report.parent, p  # relative names: the folder can be copied
    assert "<script" not in text and not re.search(r'(src|href)="https?:', text)


def test_sections_read_their_stage_files(report: Path, token_dir: Path) -> None:
    text = report.read_text()
    assert "minhash_duplicate 10" in text  # drop reasons from the curation manifests
    assert "seq 512" in text and "anneal starts" in text  # stage boundaries from metrics.jsonl
    assert "snapshot 2" in text and "Polyak average" in text  # per-snapshot held-out losses
    assert "40.0 ± 15.0" in text and "30.0 ± 15.0" in text and "+10.0" in text  # chat vs base with CIs
    assert "&lt;b&gt;2+3&lt;/b&gt;" in text  # chats are escaped
    assert "← tokens" in text  # the pretrain manifest's upstream hash is traced to the token shards' manifest
    # 2 + 2 curate, 30 pretrain, 12 posttrain (summary.json: no manifest), 5 + 5 eval, and the real shards' time
    shards = json.loads((token_dir / "MANIFEST.json").read_text())["wall_time_s"]
    assert f"Total wall time: 0m {round(56 + shards):02d}s over 6 stages" in text
    md = (report.parent / "report.md").read_text()
    assert "| arc_easy | acc_norm | 30 | 40.0 ± 15.0 | 30.0 ± 15.0 | +10.0 |" in md


def test_missing_stages_say_not_run(report: Path, tmp_path: Path) -> None:
    assert "tokenizer: not run." in report.read_text()
    empty = write_report({}, tmp_path / "empty")
    text = empty.read_text()
    for what in ("curate", "pretrain", "posttrain", "eval", "tokenizer", "tokens"):
        assert f"{what}: not run." in text, what
    assert list(image_files(empty)) == []
