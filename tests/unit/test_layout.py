"""The layout rule of DESIGN.md that import-linter cannot express: herd.model never touches torch.distributed."""

import ast
from pathlib import Path

import herd.model

MODEL_DIR = Path(herd.model.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_model_code_is_pure_torch() -> None:
    files = sorted(MODEL_DIR.rglob("*.py"))
    assert files
    for f in files:
        bad = {m for m in imported_modules(f) if m.startswith("torch.distributed") or m == "torch.distributed"}
        assert not bad, f"{f.name} imports {sorted(bad)}"
        assert "torch.distributed" not in f.read_text(), f"{f.name} mentions torch.distributed"
