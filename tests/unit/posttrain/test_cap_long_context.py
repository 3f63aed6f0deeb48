"""Long-context pipeline [P §4.3.4]: planted documents and package, a scripted summariser, buckets and the mix share."""

from __future__ import annotations

import json

import pytest

from herd.posttrain.capabilities import CapabilityContext, get_capability
from herd.posttrain.capabilities.long_context import bucket_of, chunk, module_imports, multi_needle_probe
from herd.posttrain.common import save_model

SENTENCES = [
    "The canal opened to ships in 1825 after eight years of digging by hand.",
    "Its length of the canal was 363 miles from the lake to the river at Albany.",
    "The governor who pushed for the canal was DeWitt Clinton of the state of New York.",
    "Boats were pulled along the water by mules walking on a path beside it.",
]


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(6):
        (folder / f"doc{i}.txt").write_text(" ".join(SENTENCES[i % 4 :] + SENTENCES[: i % 4]) * 3)
    return folder


@pytest.fixture
def package(tmp_path, monkeypatch):
    root = tmp_path / "pkgs" / "lcpkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "core.py").write_text("X = 1\n")
    (root / "sub" / "__init__.py").write_text("")
    for name in "abcde":
        (root / f"{name}.py").write_text(f"import lcpkg.core\n\nY_{name} = 2\n")
    (root / "sub" / "f.py").write_text("from .. import core\n")
    (root / "g.py").write_text("import os\n" + "\n" * 50 + "from lcpkg import core  # below the shown head\n")
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    return root


def test_helpers():
    assert chunk(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert bucket_of(10, [16, 32]) == 16 and bucket_of(16, [32, 16]) == 16 and bucket_of(33, [16, 32]) is None
    mods = {"p", "p.core", "p.sub", "p.sub.f", "p.a"}
    assert module_imports("from .. import core\nfrom . import f\n", "p.sub.f", mods) == [("p.core", 1)]
    assert module_imports("import p.core as c\nfrom p.core import X\nimport os\n", "p.a", mods) == [
        ("p.core", 1),
        ("p.core", 2),
    ]
    assert module_imports("def (:\n", "p.a", mods) == []


def _summariser():
    calls = []

    def reply(prompts, k):
        calls.append(len(prompts))
        if len(calls) == 1:  # chunk summaries: words taken from the chunk itself
            return [[" ".join(p[-1]["content"].split()[8:30])] for p in prompts]
        return [["The canal opened to ships after digging by mules."], ["Zebras juggled quantum xylophones."]]

    return reply


BASE = {"code_package": "lcpkg", "chunk_tokens": 200, "buckets": [600, 1200], "held_out_fraction": 0.0}


def test_samples_kept_bucketed_and_dropped_with_reasons(docs, package, chat, tmp_path):
    opts = {**BASE, "documents": [str(docs)], "n_qa": 4, "n_summaries": 2, "n_code": 2, "min_importers": 5, "share": 0}
    cap = get_capability("long_context", opts)
    cap.reply_fn = _summariser()
    ctx = CapabilityContext(policy=tmp_path, chat=chat, bundle=tmp_path, seed=0)
    counts = cap.build(ctx, tmp_path / "out")
    kept = [json.loads(x) for x in (tmp_path / "out" / "sft.jsonl").read_text().splitlines()]
    dropped = [json.loads(x) for x in (tmp_path / "out" / "dropped" / "dropped.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in dropped] == ["summary_unsupported"]
    assert sorted(r["source"] for r in kept) == ["long_context-code"] * 2 + ["long_context-qa"] * 4 + [
        "long_context-summary"
    ]
    for r in kept:
        assert r["tokens"] <= r["bucket"] and r["bucket"] in (600, 1200) and r["category"] == "long_context"
        if r["source"] == "long_context-qa":  # the answer is in the context the question comes with
            assert r["messages"][1]["content"] in r["messages"][0]["content"].split("</document>")[0]
        if r["source"] == "long_context-code":  # importers shown, g.py's late import is not visible
            assert r["target"] == "lcpkg.core" and "lcpkg/g.py" not in r["messages"][1]["content"]
            shown = {p for p in ["a", "b", "c", "d", "e"] if f"### lcpkg/{p}.py" in r["messages"][0]["content"]}
            listed = {
                line.removeprefix("- lcpkg/").removesuffix(".py") for line in r["messages"][1]["content"].split("\n")
            }
            assert shown <= listed and listed - shown <= {"sub/f"}
    assert counts["buckets"] and sum(counts["buckets"].values()) == counts["kept"] == 7


def test_too_long_and_the_mix_share(docs, package, chat, tmp_path):
    opts = {
        **BASE,
        "documents": [str(docs)],
        "n_qa": 4,
        "n_summaries": 0,
        "n_code": 0,
        "share": 0.001,
        "mix_dialogs": 2997,
    }
    cap = get_capability("long_context", opts)
    ctx = CapabilityContext(policy=tmp_path, chat=chat, bundle=tmp_path, seed=0)
    out = cap.generate(ctx)
    assert len(out.kept) == 3 and [r["reason"] for r in out.dropped] == ["over_mix_share"]  # 0.1% of 3000
    assert out.stats["realised_share"] == pytest.approx(3 / 3000)
    # a supported summary longer than the only bucket: nothing can be cut from a target
    cap = get_capability("long_context", {**opts, "buckets": [600], "n_qa": 0, "n_summaries": 1, "share": 0})
    cap.reply_fn = lambda prompts, k: [[" ".join(SENTENCES * 3)] for _ in prompts]
    out = cap.generate(ctx)
    assert not out.kept and [(r["reason"], r["tokens"] > 600) for r in out.dropped] == [("too_long", True)]


def test_multi_needle_recall_counts_keys_found(tok):
    haystack = list(tok.encode("grass is green and the sky is blue. " * 40))

    def echo(n_found):
        def gen(model, prompts, max_new_tokens):
            keys = [w.rstrip(".") for w in tok.decode(prompts[0]).split() if w.rstrip(".").isdigit() and len(w) > 4]
            return [tok.encode(" ".join(keys[:n_found]))]

        return gen

    assert multi_needle_probe(None, tok, haystack, 800, 4, generate_fn=echo(4)) == 1.0
    assert multi_needle_probe(None, tok, haystack, 800, 4, generate_fn=echo(2)) == 0.5
    with pytest.raises(ValueError, match="multi-needle probe: length 100"):
        multi_needle_probe(None, tok, haystack, 100, 4, generate_fn=echo(4))


def test_evaluate_runs_needles_and_qa_on_a_tiny_model(docs, chat, model, tmp_path):
    save_model(model, tmp_path / "m", None)
    opts = {"documents": [str(docs)], "held_out_fraction": 0.5, "eval_lengths": [512, 768],
            "eval_depths": [0.0, 1.0], "n_needles": 2, "n_eval_qa": 2, "max_new_tokens": 4}  # fmt: skip
    cap = get_capability("long_context", opts)
    res = cap.evaluate(tmp_path / "m", CapabilityContext(policy=tmp_path, chat=chat, bundle=tmp_path, seed=0))
    assert (res["metric"], res["n"], res["multi_needle_n"]) == ("needle_pass_rate", 4, 4)
    assert res["value"] == 0.0 and 1 <= res["qa_n"] <= 2  # a random model finds no pass key
