"""The image-text data stage [P §7.1.1]: offline image-text pairs → images/ + pairs.jsonl + heldout.jsonl.

Sources, all generated on this machine (nothing downloaded):
- scene: rendered shapes (circle/square/triangle) in colours at positions, captioned, with QA on colour,
  shape, position and count;
- digit: scikit-learn's bundled handwritten digits (8×8, UCI), upscaled; QA "which digit";
- ocr: short words rendered with PIL's font; QA "what does the text say" (exact match);
- chart: matplotlib bar charts of three labelled bars; QA "which bar is tallest".

Then, as the paper curates its pairs: near-duplicate images are removed by perceptual hash (the paper
uses SSCD embeddings; a 64-bit pHash within `phash_distance` bits stands in), and captions are
resampled by n-gram frequency — an n-gram seen f times is kept with probability √(T/f) and a pair
survives if any of its n-grams is kept [P §7.1.1], which flattens the head of the caption distribution.
Dropped pairs go to dropped/dropped.jsonl with their reason; in = kept + dropped.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 200, 30)}
SHAPES = ("circle", "square", "triangle")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
WORDS = ("cat", "dog", "sun", "map", "red", "box", "cup", "pen", "key", "car", "hat", "bus", "egg", "fox")
DIRECTIONS = ("left", "right", "up", "down")

# Question prefix → the closed answer set of that question type (VQA scoring and DPO's wrong answers).
ANSWER_SETS: dict[str, tuple[str, ...]] = {
    "What colour": tuple(COLOURS),
    "What shape": SHAPES,
    "Where is": ("left", "middle", "right"),
    "How many": NUMBER_WORDS[1:4],
    "What digit": NUMBER_WORDS,
    "What does the text say": WORDS,
    "Which bar": ("a", "b", "c"),
    "Which way": DIRECTIONS,
    "Which colour appeared first": tuple(COLOURS),
    "In how many frames": NUMBER_WORDS[2:9],
}


def answer_set(question: str) -> tuple[str, ...]:
    """The candidate answers of a question's type; an unknown question type is an error."""
    for prefix, answers in ANSWER_SETS.items():
        if question.startswith(prefix):
            return answers
    raise ValueError(f"no answer set for question {question!r}")


@dataclass(frozen=True)
class VisionDataConfig:
    out_dir: str = "runs/vision/data"
    seed: int = 0
    image_size: int = 64
    n_scenes: int = 1200
    n_digits: int = 300
    n_ocr: int = 200
    n_charts: int = 120
    heldout_fraction: float = 0.2
    phash_distance: int = 0  # bits; 0 drops exact pHash matches only
    ngram: int = 2
    resample_t: float = 40.0  # T in √(T/f) [P §7.1.1]
    n_videos: int = 400  # short clips for video QA (0: none)
    video_frames: int = 8
    video_size: int = 32  # frame side in pixels (small: a clip is n_frames images)


@dataclass
class Pair:
    id: str
    kind: str
    caption: str
    qa: list[tuple[str, str]]
    image: Any  # PIL.Image

    def row(self, split: str) -> dict[str, Any]:
        qa = [{"question": q, "answer": a} for q, a in self.qa]
        return {"id": self.id, "kind": self.kind, "image": f"images/{self.id}.png", "caption": self.caption,
                "qa": qa, "split": split}  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Generators


def render_scene(rng: random.Random, size: int, i: int) -> Pair:
    """1-3 shapes of distinct colours and shapes in distinct horizontal thirds."""
    from PIL import Image, ImageDraw

    n = rng.randint(1, 3)
    colours, shapes = rng.sample(list(COLOURS), n), rng.sample(SHAPES, n)
    slots = sorted(rng.sample(range(3), n))
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    third, r = size / 3, size / 8
    where = ("left", "middle", "right")
    parts, qa = [], []
    for colour, shape, slot in zip(colours, shapes, slots, strict=True):
        cx, cy = third * slot + third / 2, size / 2 + rng.uniform(-size / 5, size / 5)
        box = (cx - r, cy - r, cx + r, cy + r)
        if shape == "circle":
            draw.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            draw.rectangle(box, fill=COLOURS[colour])
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=COLOURS[colour])
        parts.append(f"a {colour} {shape} on the {where[slot]}")
        qa += [(f"What colour is the {shape}?", colour), (f"What shape is {colour}?", shape),
               (f"Where is the {shape}?", where[slot])]  # fmt: skip
    qa.append(("How many shapes are there?", NUMBER_WORDS[n]))
    return Pair(f"scene-{i:05d}", "scene", " and ".join(parts) + ".", qa, img)


def digit_pairs(rng: random.Random, size: int, n: int) -> list[Pair]:
    """scikit-learn's bundled 8×8 handwritten digits (1,797 of them), upscaled with nearest neighbours."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    picks = rng.sample(range(len(digits.target)), min(n, len(digits.target)))
    out = []
    for i in picks:
        pixels = (255 - digits.images[i] * 255 / 16).astype("uint8")  # 0..16 ink → dark on white
        img = Image.fromarray(pixels).resize((size, size), Image.Resampling.NEAREST).convert("RGB")
        d = int(digits.target[i])
        out.append(Pair(f"digit-{i:05d}", "digit", f"the handwritten digit {NUMBER_WORDS[d]}.",
                        [("What digit is this?", NUMBER_WORDS[d])], img))  # fmt: skip
    return out


def render_ocr(rng: random.Random, size: int, i: int) -> Pair:
    from PIL import Image, ImageDraw, ImageFont

    word = rng.choice(WORDS)
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=size // 4)
    draw.text((rng.uniform(2, size / 3), rng.uniform(2, size / 2)), word.upper(), fill=(0, 0, 0), font=font)
    return Pair(f"ocr-{i:05d}", "ocr", f'the word "{word}" printed in black.', [("What does the text say?", word)], img)


def render_chart(rng: random.Random, size: int, i: int) -> Pair:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    labels = ["a", "b", "c"]
    heights = rng.sample(range(1, 10), 3)
    fig, ax = plt.subplots(figsize=(1, 1), dpi=size)
    ax.bar(labels, heights, color="black")
    ax.set_ylim(0, 10)
    ax.set_yticks([])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB").resize((size, size))
    top = labels[heights.index(max(heights))]
    caption = "a bar chart of " + ", ".join(f"{k} at {v}" for k, v in zip(labels, heights, strict=True)) + "."
    return Pair(f"chart-{i:05d}", "chart", caption, [("Which bar is tallest?", top)], img)


def _draw(draw, shape: str, cx: float, cy: float, r: float, fill: tuple[int, int, int]) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)


def render_video(rng: random.Random, size: int, n_frames: int, i: int) -> tuple[dict[str, Any], Any]:
    """A clip of `n_frames` frames, stored as one horizontal strip: shape A moves in one direction and is
    visible for a run of frames; shape B (another colour) sits still and shows up at another frame.
    QA: A's direction, which colour appeared first, and in how many frames A is visible."""
    from PIL import Image, ImageDraw

    (ca, cb), (sa, sb) = rng.sample(list(COLOURS), 2), rng.sample(SHAPES, 2)
    direction = rng.choice(DIRECTIONS)
    a0 = rng.randrange(0, n_frames - 1)
    a1 = rng.randrange(a0 + 2, n_frames + 1)  # A visible in frames [a0, a1), at least 2: it must move
    b0 = rng.choice([f for f in range(n_frames) if f != a0])
    r = size / 8
    step = (size - 4 * r) / max(1, n_frames - 1)  # A crosses the frame over the whole clip
    dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[direction]
    fixed = rng.uniform(2 * r, size - 2 * r)  # A's coordinate across its motion
    bx, by = rng.uniform(r, size - r), rng.uniform(r, size - r)
    strip = Image.new("RGB", (size * n_frames, size), (255, 255, 255))
    for f in range(n_frames):
        frame = Image.new("RGB", (size, size), (255, 255, 255))
        draw = ImageDraw.Draw(frame)
        if f >= b0:
            _draw(draw, sb, bx, by, r, COLOURS[cb])
        if a0 <= f < a1:
            t = 2 * r + step * f
            along = t if (dx + dy) > 0 else size - t
            cx, cy = (along, fixed) if dx else (fixed, along)
            _draw(draw, sa, cx, cy, r, COLOURS[ca])
        strip.paste(frame, (f * size, 0))
    first = ca if a0 < b0 else cb
    qa = [(f"Which way does the {ca} {sa} move?", direction), ("Which colour appeared first?", first),
          (f"In how many frames is the {ca} {sa} visible?", NUMBER_WORDS[a1 - a0])]  # fmt: skip
    caption = f"a {ca} {sa} moving {direction}, then a {cb} {sb} appears." if a0 < b0 else (
        f"a {cb} {sb} appears, then a {ca} {sa} moving {direction}.")  # fmt: skip
    row = {"id": f"video-{i:05d}", "kind": "video", "image": f"videos/video-{i:05d}.png", "caption": caption,
           "n_frames": n_frames, "qa": [{"question": q, "answer": a} for q, a in qa]}  # fmt: skip
    return row, strip


def preference_rows(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """DPO pairs from rendered-scene questions: the true answer is chosen, a random other answer of the
    same question type is rejected [P §7.5.4 uses model samples with human edits; here the data's truth]."""
    rng = random.Random(seed)
    out = []
    for r in rows:
        if r["kind"] != "scene":
            continue
        for q in r["qa"]:
            wrong = [a for a in answer_set(q["question"]) if a != q["answer"]]
            out.append({"id": r["id"], "image": r["image"], "question": q["question"], "chosen": q["answer"],
                        "rejected": rng.choice(wrong)})  # fmt: skip
    return out


def write_videos(cfg: VisionDataConfig, out: Path) -> dict[str, int]:
    """video_train.jsonl / video_heldout.jsonl and videos/*.png (one strip per clip), split by clip."""
    rng = random.Random(cfg.seed + 2)
    (out / "videos").mkdir()
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "heldout": []}
    for i in range(cfg.n_videos):
        row, strip = render_video(rng, cfg.video_size, cfg.video_frames, i)
        strip.save(out / row["image"])
        split = "heldout" if rng.random() < cfg.heldout_fraction else "train"
        splits[split].append({**row, "split": split})
    for split, rows in splits.items():
        (out / f"video_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"video_train": len(splits["train"]), "video_heldout": len(splits["heldout"])}


def generate(cfg: VisionDataConfig) -> list[Pair]:
    rng = random.Random(cfg.seed)
    pairs = [render_scene(rng, cfg.image_size, i) for i in range(cfg.n_scenes)]
    pairs += digit_pairs(rng, cfg.image_size, cfg.n_digits)
    pairs += [render_ocr(rng, cfg.image_size, i) for i in range(cfg.n_ocr)]
    pairs += [render_chart(rng, cfg.image_size, i) for i in range(cfg.n_charts)]
    return pairs


# ---------------------------------------------------------------------------------------------------
# Curation


def phash_dedup(pairs: list[Pair], max_distance: int) -> tuple[list[Pair], list[tuple[Pair, str]]]:
    """Keep the first of every group of images whose 64-bit pHashes differ by ≤ max_distance bits."""
    import imagehash

    kept, dropped, seen = [], [], {}
    for p in pairs:
        h = imagehash.phash(p.image)
        if max_distance == 0:
            hit = seen.get(str(h))
        else:
            hit = next((k for hh, k in seen.items() if (h - imagehash.hex_to_hash(hh)) <= max_distance), None)
        if hit is not None:
            dropped.append((p, f"duplicate_image:{hit}"))
            continue
        seen[str(h)] = p.id
        kept.append(p)
    return kept, dropped


def ngrams(text: str, n: int) -> set[str]:
    words = text.lower().rstrip(".").split()
    return {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def ngram_resample(pairs: list[Pair], n: int, t: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Keep each caption n-gram with probability min(1, √(T/f)); keep a pair if any of its n-grams is
    kept [P §7.1.1]. Rare captions always survive; a caption made only of head n-grams rarely does."""
    freq = Counter(g for p in pairs for g in ngrams(p.caption, n))
    rng = random.Random(seed)
    kept, dropped = [], []
    for p in pairs:
        keep = any(rng.random() < min(1.0, math.sqrt(t / freq[g])) for g in sorted(ngrams(p.caption, n)))
        (kept if keep else dropped).append(p)
    return kept, dropped


def build(cfg: VisionDataConfig, out: Path) -> dict[str, Any]:
    """Generate, de-duplicate, resample, split by image (held-out images never seen in training), write."""
    pairs = generate(cfg)
    kept, dup = phash_dedup(pairs, cfg.phash_distance)
    kept, resampled = ngram_resample(kept, cfg.ngram, cfg.resample_t, cfg.seed)
    (out / "images").mkdir(parents=True)
    (out / "dropped").mkdir()
    rng = random.Random(cfg.seed + 1)
    splits = {"train": [], "heldout": []}
    for p in kept:
        split = "heldout" if rng.random() < cfg.heldout_fraction else "train"
        p.image.save(out / "images" / f"{p.id}.png")
        splits[split].append(p.row(split))
    for split, rows in splits.items():
        name = "pairs.jsonl" if split == "train" else "heldout.jsonl"
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    prefs = preference_rows(splits["train"], cfg.seed + 3)
    (out / "preferences.jsonl").write_text("".join(json.dumps(r) + "\n" for r in prefs))
    videos = write_videos(cfg, out)
    drops = [{**p.row("dropped"), "reason": r} for p, r in dup]
    drops += [{**p.row("dropped"), "reason": "ngram_resample"} for p in resampled]
    (out / "dropped" / "dropped.jsonl").write_text("".join(json.dumps(r) + "\n" for r in drops))
    by_kind = Counter(r["kind"] for rows in splits.values() for r in rows)
    return {
        "in": len(pairs),
        "kept": len(kept),
        "dropped": {"duplicate_image": len(dup), "ngram_resample": len(resampled)},
        "train": len(splits["train"]),
        "heldout": len(splits["heldout"]),
        "by_kind": dict(sorted(by_kind.items())),
        "qa_heldout": sum(len(r["qa"]) for r in splits["heldout"]),
        "preferences": len(prefs),
        **videos,
    }


def run_data_stage(cfg: VisionDataConfig, force: bool = False):
    """The stage through herd's runner: skipped when its manifest matches the config and code version."""
    from herd.core.stage import FnStage, run_stage

    return run_stage(FnStage("vision-data", cfg, Path(cfg.out_dir), [], lambda tmp: build(cfg, tmp)), force=force)


SPLIT_FILES = {
    "train": ("pairs.jsonl", ("id", "image", "caption", "qa")),
    "heldout": ("heldout.jsonl", ("id", "image", "caption", "qa")),
    "preferences": ("preferences.jsonl", ("id", "image", "question", "chosen", "rejected")),
    "video_train": ("video_train.jsonl", ("id", "image", "n_frames", "qa")),
    "video_heldout": ("video_heldout.jsonl", ("id", "image", "n_frames", "qa")),
}


def load_split(folder: str | Path, split: str) -> list[dict[str, Any]]:
    """Rows of one of SPLIT_FILES, each checked; a bad line names file, line and field."""
    name, keys = SPLIT_FILES[split]
    path = Path(folder) / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (run the vision data stage first)")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
        for key in keys:
            if key not in row:
                raise ValueError(f"{path}:{n}: missing field '{key}'")
        rows.append(row)
    return rows
