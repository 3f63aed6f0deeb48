"""`herd chat MODEL --image FILE`: a saved vision folder answers questions about a PNG or JPEG from scripted
stdin, the same answers as the library call; a bad image or folder is a one-line error naming the file."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from herd.model import build_model
from herd.model.config import get_preset
from herd.model.convert import save_hf
from herd.vision.adapter import VisionLanguageModel
from herd.vision.chat import answer, encode_image, load_vision_model, save_vision_model
from herd.vision.config import ENCODER_PRESETS, VisionConfig

PIL = pytest.importorskip("PIL")


@pytest.fixture(scope="module")
def vision_folder(tmp_path_factory, smollm2_gguf) -> Path:
    """A random tiny model on the SmolLM2 tokenizer (49,152 ids), gates open so the image matters."""
    root = tmp_path_factory.mktemp("vision-chat")
    text = build_model(get_preset("debug", vocab_size=49152), seed=0)
    save_hf(text, root / "lm")
    enc = replace(ENCODER_PRESETS["tiny"], image_size=32, max_num_tiles=1)
    model = VisionLanguageModel(VisionConfig(encoder=enc, text=text.cfg, cross_layers=(1,)), text=text)
    model.init_adapter(seed=1)
    with torch.no_grad():
        model.cross_layers["1"].gate_attn.fill_(1.0)
    return save_vision_model(model, SimpleNamespace(lm=str(root / "lm")), root / "model", tokenizer="smollm2")


def scene(path: Path, colour: str) -> Path:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (40, 30), "white")
    ImageDraw.Draw(img).ellipse((5, 5, 25, 25), fill=colour)
    img.save(path)
    return path


def herd(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "herd.cli", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip


def test_chat_answers_about_an_image_from_stdin(vision_folder, tmp_path):
    png, jpg = scene(tmp_path / "red.png", "red"), scene(tmp_path / "blue.jpg", "blue")
    questions = ["What colour is the circle?", "Where is the circle?"]
    model, tok, _ = load_vision_model(vision_folder)
    for image in (png, jpg):
        r = herd("chat", str(vision_folder), "--image", str(image), "--max-new-tokens", "3",
                 stdin="\n".join(questions) + "\n/exit\nnot read\n")  # fmt: skip
        assert r.returncode == 0, r.stderr
        lines = [x for x in r.stdout.splitlines() if x.startswith("assistant> ")]
        expect = [answer(model, tok, encode_image(model, image), q, max_new_tokens=3) for q in questions]
        assert lines == [f"assistant> {a}" for a in expect]  # two questions answered, nothing after /exit
    red, blue = encode_image(model, png), encode_image(model, jpg)
    assert not torch.equal(red[0], blue[0])
    assert red[1] == 1


def test_bad_image_and_folder_are_one_line_errors(vision_folder, tmp_path):
    bad = tmp_path / "x.png"
    bad.write_text("not an image")
    r = herd("chat", str(vision_folder), "--image", str(bad), stdin="hi\n")
    assert r.returncode != 0 and str(bad) in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = herd("chat", str(tmp_path), "--image", str(bad), stdin="hi\n")
    assert r.returncode != 0 and "vision.json" in r.stderr and len(r.stderr.strip().splitlines()) == 1
