"""Small builders shared by tests (importable: `tests/` is on pytest's pythonpath)."""

from __future__ import annotations

from herd.model import ModelConfig, RopeScaling


def tiny_config(scaled: bool = True, tied: bool = False, **overrides: object) -> ModelConfig:
    """A random-shape-ish GQA config: 8 query heads sharing 2 KV heads; scaling active at short range."""
    fields = dict(
        dim=64,
        n_layers=2,
        n_heads=8,
        n_kv_heads=2,
        vocab_size=300,
        ffn_dim=96,
        rope_theta=500_000.0,
        rope_scaling=RopeScaling(factor=8.0, original_max_seq_len=64) if scaled else None,
        tie_embeddings=tied,
        max_seq_len=512,
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def write_corpus(root, n_code: int = 40, n_prose: int = 150) -> dict[str, list[str]]:
    """A small real corpus from this interpreter's standard library: module sources ("code") and
    their long docstrings ("prose"). Present on every machine that runs the tests."""
    import ast
    import json
    import random
    import sysconfig
    from pathlib import Path

    root = Path(root)
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    random.Random(0).shuffle(files)
    (root / "code").mkdir(parents=True, exist_ok=True)
    (root / "prose").mkdir(exist_ok=True)
    for f in files[:n_code]:
        (root / "code" / f"{f.stem}.txt").write_text(f.read_text(errors="replace"))
    rows = []
    for f in files[n_code:]:
        try:
            tree = ast.parse(f.read_text(errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.Module):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 200:
                    rows.append(json.dumps({"text": doc}))
        if len(rows) >= n_prose:
            break
    (root / "prose" / "docs.jsonl").write_text("\n".join(rows) + "\n")
    return {"code": [str(root / "code")], "prose": [str(root / "prose")]}
