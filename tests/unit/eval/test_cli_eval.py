"""`herd eval CONFIG`: writes results.json, results.md/.html and samples; bad configs are one-line errors."""

import json
import subprocess
import sys

from herd.core.config import load_config
from herd.data.shards import write_shard
from herd.eval.config import EvalConfig


def test_configs_in_the_repo_load() -> None:
    for name in ("smollm2", "debug", "contamination", "qa"):
        cfg = load_config(EvalConfig, f"configs/eval/{name}.toml")
        assert cfg.tasks and cfg.model.path == "smollm2"


def test_unknown_key_is_a_one_line_error(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[tasks]]\nname = "piqa"\nlimt = 3\n')
    r = subprocess.run([sys.executable, "-m", "herd.cli", "eval", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "did you mean 'tasks[0].limit'" in r.stderr


def test_herd_eval_writes_json_markdown_html(tmp_path, smollm2_gguf) -> None:
    from herd.cli.main import main
    from herd.tokenizer import load_tokenizer

    rows = [
        {"query": f"Question: What is {i} plus {i}?\nAnswer:", "choices": [str(2 * i), "7"], "gold": 0}
        for i in range(3)
    ]
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "gen.jsonl").write_text(json.dumps({"prompt": "The capital of France is", "answer": "Paris"}) + "\n")
    tok = load_tokenizer("smollm2")
    (tmp_path / "shards").mkdir()
    write_shard(tmp_path / "shards" / "a.bin", [tok.encode("Question: What is 0 plus 0?\nAnswer: 0")], tok.vocab_size)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'out = "{tmp_path / "run"}"\n[model]\npath = "smollm2"\ndevice = "cpu"\n'
        f'[[tasks]]\nname = "mine"\npath = "{tmp_path / "mine.jsonl"}"\n'
        f'[[tasks]]\nname = "gen"\npath = "{tmp_path / "gen.jsonl"}"\nmax_new_tokens = 4\n'
        f'[contamination]\nenabled = true\nshards = "{tmp_path / "shards"}"\ntokenizer = "smollm2"\n'
    )
    assert main(["eval", str(cfg)]) == 0
    run = tmp_path / "run"
    data = json.loads((run / "results.json").read_text())
    assert [r["task"] for r in data["results"]] == ["mine", "gen"]
    assert all("ci95" in r for r in data["results"])
    assert data["contamination"][0]["contaminated_pct"] > 0
    assert "± " in (run / "results.md").read_text() and "<table>" in (run / "results.html").read_text()
    assert (run / "samples" / "mine.jsonl").is_file() and (run / "MANIFEST.json").is_file()
    counts = json.loads((run / "MANIFEST.json").read_text())["counts"]  # the record the run report renders
    assert counts["results"] == data["results"] and counts["contamination"] == data["contamination"]
    assert counts["mine"] == 3 and counts["report"] == {"figures": {}}  # robustness off: no figure
