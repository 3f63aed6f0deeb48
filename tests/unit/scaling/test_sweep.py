"""The sweep grid, one tiny real run (resume, lock, benchmark), and `herd scaling fit` on written results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from herd.cli.main import main
from herd.core.config import from_dict, load_config
from herd.core.stage import finished
from herd.model.config import flops_per_token
from herd.scaling.analyze import analyze
from herd.scaling.config import ScalingConfig
from herd.scaling.sweep import RESULT, benchmark, claim, cut_windows, plan, pretrain_config, run_one, scaling_run
from herd.train.loop import model_config

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "configs" / "scaling" / "tiny.toml"


def tiny_cfg(tmp_path: Path, token_dir: Path, task: str = "") -> ScalingConfig:
    sizes = [
        {"name": "a", "dim": 16, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1, "ffn_dim": 32},
        {"name": "b", "dim": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1, "ffn_dim": 64},
    ]
    tree = dict(
        run_dir=str(tmp_path / "sweep"), budgets=[2e8, 4e8], sizes=sizes, seq_len=32, batch_tokens=[256],
        micro_batch_size=8, lr=3e-3, eval_batches=1, checkpoints=2,
        data={"shards": str(token_dir), "build": None},
        benchmark={"task": "", "path": task, "limit": 0},
    )  # fmt: skip
    return from_dict(ScalingConfig, tree)


def test_plan_spends_the_budget_by_the_models_own_accounting(tmp_path, token_dir):
    cfg = tiny_cfg(tmp_path, token_dir)
    specs = plan(cfg, token_dir)
    assert len(specs) == 4
    for s in specs:
        size = next(z for z in cfg.sizes if z.name == s.size)
        pcfg = pretrain_config(cfg, size, token_dir, s.run_dir, s.steps, s.batch_tokens)
        assert s.flops_per_token == flops_per_token(model_config(pcfg, 1024), cfg.seq_len)
        assert abs(s.tokens - s.budget / s.flops_per_token) <= s.batch_tokens / 2  # D = C / FLOPs-per-token(N)
        assert s.flops == pytest.approx(s.tokens * s.flops_per_token)


def test_windows_cut_every_document_and_keep_the_layout(tmp_path, token_dir):
    from herd.data.shards import TokenShard

    out = cut_windows(token_dir, tmp_path / "win", 33)
    src = sorted(p.relative_to(token_dir) for p in token_dir.glob("*/*/*.bin"))
    assert sorted(p.relative_to(out) for p in out.glob("*/*/*.bin")) == src  # same sources, splits, shards
    for rel in src:
        whole, cut = TokenShard(token_dir / rel), TokenShard(out / rel)
        assert all(len(w) == 33 for w in cut.docs())
        assert cut.n_tokens == sum(len(d) // 33 * 33 for d in whole.docs())  # remainders dropped
        first = next(d for d in whole.docs() if len(d) >= 66)
        assert any(np.array_equal(first[33:66], w) for w in cut.docs())  # windows are slices of documents
    manifest = (out / "MANIFEST.json").stat().st_mtime_ns
    # The tokenizer beside the shards goes along: the trainer copies it into the exports (for the benchmark).
    assert (out / "tokenizer.model").read_bytes() == (token_dir / "tokenizer.model").read_bytes()
    cut_windows(token_dir, out, 33)
    assert (out / "MANIFEST.json").stat().st_mtime_ns == manifest  # done: skipped


def test_run_schedule_is_the_papers_scaled_to_the_run(tmp_path, token_dir):
    cfg = tiny_cfg(tmp_path, token_dir)
    p = pretrain_config(cfg, cfg.sizes[0], token_dir, str(tmp_path / "r"), steps=300, batch=256)
    assert p.schedule.total_steps == p.schedule.max_steps == 300  # cosine over the whole run
    assert p.schedule.min_lr == pytest.approx(0.1 * p.optim.lr)  # decay to 0.1 × peak [P §3.2.1]
    assert p.optim.weight_decay == 0.1  # × the current LR in torch's AdamW [P §3.2.1]
    assert p.schedule.warmup_steps == 30  # 2,000 steps capped at 10% of the run
    assert p.anneal.tokens == 0 and not p.long_context


def test_one_run_trains_scores_resumes_and_locks(tmp_path, token_dir):
    task = tmp_path / "mc.jsonl"
    rows = [{"query": f"def f{i}():\n    return", "choices": [" None", " 1", " x"], "gold": i % 3} for i in range(4)]
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tiny_cfg(tmp_path, token_dir, task=str(task))
    spec = plan(cfg, token_dir)[0]
    result = run_one(cfg, spec, token_dir)
    assert result is not None and np.isfinite(result["val_loss"]) and result["steps"] == spec.steps
    assert result["nll_norm"] > 0 and result["benchmark_n"] == 4
    written = (Path(spec.run_dir) / RESULT).stat().st_mtime_ns
    assert run_one(cfg, spec, token_dir) == result  # done: not trained again
    assert (Path(spec.run_dir) / RESULT).stat().st_mtime_ns == written
    other = plan(cfg, token_dir)[1]
    with claim(Path(other.run_dir)) as mine:
        assert mine
        assert run_one(cfg, other, token_dir) is None  # another process holds it
    assert finished(scaling_run(cfg, other, token_dir)) is None


def test_missing_benchmark_data_is_skipped_cleanly(tmp_path, token_dir):
    cfg = tiny_cfg(tmp_path, token_dir, task=str(tmp_path / "absent.jsonl"))
    out = benchmark(cfg, tmp_path)
    assert "absent.jsonl" in out["benchmark_skipped"]


def _write_results(root: Path) -> None:
    """A synthetic sweep in result.json files: 3 budgets × 4 sizes and one held-out larger run."""
    rng = np.random.default_rng(0)
    sizes = {"s1": 1e5, "s2": 2e5, "s3": 5e5, "s4": 1e6}
    grid = [(c, s, False) for c in (5e11, 1e12, 2e12) for s in sizes] + [(4e12, "s3", True)]
    for c, s, held in grid:
        tokens = c / (6 * sizes[s])
        u_opt = np.log10(0.033 * c**0.6)  # D* = 0.033·C^0.6: inside the grid at every budget
        loss = 12 - 0.8 * np.log10(c) + 0.3 * (np.log10(tokens) - u_opt) ** 2 + rng.normal(0, 0.003)
        nll = 6.5 - 0.3 * np.log10(c) + rng.normal(0, 0.01)
        r = {"budget": c, "size": s, "params": sizes[s], "tokens": tokens, "flops": c, "holdout": held,
             "val_loss": loss, "nll_norm": nll, "accuracy": 0.25 + 0.1 / (1 + np.exp(4 * (nll - 3))), "chance": 0.25,
             "benchmark": "synthetic"}  # fmt: skip
        d = root / "runs" / f"{c:.0e}-{s}"
        d.mkdir(parents=True)
        (d / RESULT).write_text(json.dumps(r))


def test_fit_command_writes_report_and_plots(tmp_path, capsys):
    _write_results(tmp_path)
    tiny = load_config(ScalingConfig, TINY)  # the bundled config loads; its held-out run is 2x its largest budget
    assert tiny.holdout.budget == 2 * max(tiny.budgets) and tiny.holdout.size in {s.name for s in tiny.sizes}
    assert main(["scaling", "fit", str(TINY), f"run_dir={tmp_path}", "--boot", "200"]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "fit.json").read_text())
    assert report["tokens"]["alpha"] == pytest.approx(0.6, abs=0.05)
    assert abs(report["holdout"]["relative_error"]) < 0.03 and "held-out run" in out
    for name in ("isoflops.png", "power_law.png", "downstream.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_holdout_prediction_never_reads_the_holdout(tmp_path):
    _write_results(tmp_path)
    cfg = from_dict(ScalingConfig, {"run_dir": str(tmp_path), "benchmark": {"task": ""}})
    first = analyze(cfg, n_boot=100, plots=False)["holdout"]
    held = next(tmp_path.glob("runs/4e+12-*/result.json"))
    r = json.loads(held.read_text())
    held.write_text(json.dumps({**r, "val_loss": r["val_loss"] + 1.0}))
    second = analyze(cfg, n_boot=100, plots=False)["holdout"]
    assert second["predicted"] == first["predicted"] and second["predicted_ci"] == first["predicted_ci"]
    assert second["measured"] == pytest.approx(first["measured"] + 1.0)


def test_fit_without_runs_is_a_one_line_error(tmp_path, capsys):
    assert main(["scaling", "fit", str(TINY), f"run_dir={tmp_path}"]) == 2
    assert "no finished runs" in capsys.readouterr().err


def test_paper_command_prints_the_discrepancy(capsys):
    assert main(["scaling", "paper"]) == 0
    out = capsys.readouterr().out
    assert "10.46T" in out and "16.55T" in out and "0.5378" in out
