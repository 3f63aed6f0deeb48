"""The `herd` command line: thin, exact, and one-line errors."""

import subprocess
import sys

import pytest
import torch

from herd.cli.main import main
from herd.model import load_model


def herd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "herd.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    ("preset", "count"), [("8B", "8,030,261,248"), ("70B", "70,553,706,496"), ("405B", "405,853,388,800")]
)
def test_model_info_prints_exact_counts(capsys, preset: str, count: str) -> None:
    assert main(["model", "info", preset]) == 0
    out = capsys.readouterr().out
    assert count in out and "KV cache" in out


def test_unknown_preset_is_one_line_error() -> None:
    r = herd("model", "info", "7B")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown model preset '7B'" in r.stderr


def test_convert_gguf_to_hf_dir(tmp_path, smollm2_gguf, capsys) -> None:
    assert main(["convert", str(smollm2_gguf), str(tmp_path / "out"), "--max-shard-gb", "0.2"]) == 0
    assert "134,515,008 parameters" in capsys.readouterr().out
    ours, back = load_model(smollm2_gguf), load_model(tmp_path / "out")
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in ours.state_dict().items())


def test_convert_missing_source_is_one_line_error(tmp_path) -> None:
    r = herd("convert", str(tmp_path / "missing"), str(tmp_path / "out"))
    assert r.returncode == 2 and "missing: not found" in r.stderr and r.stderr.strip().count("\n") == 0


def test_chat_answers_with_the_bundled_model(smollm2_gguf) -> None:
    r = herd("chat", "smollm2", "--message", "What is the capital of France?", "--max-new-tokens", "24")
    assert r.returncode == 0, r.stderr
    assert "assistant>" in r.stdout and "Paris" in r.stdout
