"""`herd recipe CONFIG`: the whole Llama 3 recipe on one run folder, stage by stage.

corpus → curate → tokenizer → tokenize → pretrain (ramps, annealing, Polyak average) → posttrain
(RM → RS → SFT → DPO rounds) → eval (chat and base model; contamination against the run's own shards)
→ safety → speech (espeak-ng ASR through a frozen LM, when enabled) → report. Every step is a `Stage`
(herd.core.stage) run by the one runner, which skips a stage whose folder is finished under the same key
(name, code version, whole config, input content), so a killed recipe picks up at the stage it was in
(pretraining resumes from its last checkpoint). `--stage NAME` runs one stage on the outputs already
there; a changed key runs it again, and everything downstream sees changed inputs.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from herd.core.config import dump_toml
from herd.core.io import MANIFEST_NAME, atomic_write_text, sha256_file
from herd.core.logging import get_logger
from herd.core.manifest import Manifest
from herd.core.stage import Stage, run_stage
from herd.recipe.config import STAGES, RecipeConfig, ReportSection, mix_dir

log = get_logger(__name__)


@dataclass
class Recipe:
    cfg: RecipeConfig
    walls: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.cfg.run_dir)

    def run(self, only: str | None = None) -> dict[str, Any]:
        if only is not None and only not in STAGES:
            raise ValueError(f"--stage {only!r}: choose one of {', '.join(STAGES)}")
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / "recipe.resolved.toml", dump_toml(self.cfg))
        for name in STAGES if only is None else (only,):
            start = time.perf_counter()
            log.info("recipe: stage %s", name)
            getattr(self, f"stage_{name}")()
            self.walls[name] = {"wall_s": round(time.perf_counter() - start, 1)}
        self._write_lineage()
        return self.walls

    # ------------------------------------------------------------------ stages

    def stage_corpus(self) -> None:
        from herd.data.bundle import CorpusConfig, CorpusStage

        c = self.cfg.corpus
        if c.documents:
            if not Path(c.documents).is_dir():
                raise FileNotFoundError(f"corpus.documents: no such folder {c.documents}")
            return
        if not Path(c.sources).is_dir():
            raise FileNotFoundError(f"corpus.sources: no folder {c.sources} (run scripts/fetch_corpus.sh {c.sources})")
        run_stage(CorpusStage(CorpusConfig(c.sources), str(self.root / "corpus")))

    def stage_curate(self) -> None:
        from herd.data.pipeline import run_curation
        from herd.judge import curation_judge

        run_curation(self.cfg.curate, curation_judge(self.cfg.curate.quality))

    def stage_tokenizer(self) -> None:
        from herd.data.tokenizer_stage import TokenizerStage

        if self.cfg.meta_tokenizer:
            log.info("tokenizer: Meta's Llama 3 tokenizer (no training)")
            return
        run_stage(TokenizerStage(self.cfg.tokenizer))

    def tokenize_config(self):
        """One source per curated bucket with documents, plus the annealing subset as "anneal"."""
        tcfg = copy.deepcopy(self.cfg.tokenize)
        mix = mix_dir(self.cfg)
        folders = {d.name: d for d in sorted((mix / "kept").iterdir()) if d.is_dir()}
        if (mix / "anneal").is_dir():
            folders["anneal"] = mix / "anneal"
        tcfg.sources = {k: [str(d)] for k, d in folders.items() if any(p.is_file() for p in d.rglob("*"))}
        return tcfg

    def stage_tokenize(self) -> None:
        from herd.data.tokenize import TokenizeStage

        run_stage(TokenizeStage(self.tokenize_config()))

    def pretrain_config(self):
        """The embedded pretraining config with curation's data-mix weights [P §3.1.2] filled in."""
        pcfg = copy.deepcopy(self.cfg.pretrain)
        weights = self._mix_weights()
        sources = self._token_sources()
        if weights and not pcfg.data.mix:
            pcfg.data.mix = weights | ({"anneal": 0.0} if "anneal" in sources else {})
        if weights and pcfg.anneal.tokens and not pcfg.anneal.mix and "anneal" in sources:
            share, total = self.cfg.anneal_share, sum(weights.values())
            pcfg.anneal.mix = {k: (1 - share) * w / total for k, w in weights.items()} | {"anneal": share}
        return pcfg

    def _token_sources(self) -> set[str]:
        tokens = Path(self.cfg.tokenize.out)
        return {d.name for d in tokens.iterdir() if d.is_dir()} if tokens.is_dir() else set()

    def _mix_weights(self) -> dict[str, float]:
        """Curation's mix weights for the buckets that were tokenized."""
        path = mix_dir(self.cfg) / "mix_weights.json"
        if not path.is_file():
            return {}
        buckets = json.loads(path.read_text())["buckets"]
        present = self._token_sources()
        return {k: float(b["weight"]) for k, b in buckets.items() if k in present and b["weight"] > 0}

    def stage_pretrain(self) -> None:
        from herd.train.stage import PretrainStage

        # A folder started under another config or other shards is cleared, never resumed into.
        run_stage(PretrainStage(self.pretrain_config()))

    def stage_posttrain(self) -> None:
        from herd.posttrain.bundle import build_bundle
        from herd.posttrain.rounds import PosttrainStage

        build_bundle(self.cfg.posttrain.bundle)
        run_stage(PosttrainStage(self.cfg.posttrain), fresh=False)  # its rounds skip what is finished

    def chat_model(self) -> Path:
        return Path(Manifest.read(self.cfg.posttrain.out).counts["final_model"])

    def eval_configs(self) -> list:
        """The chat model's evaluation, and the base model's when `eval_base` (contamination is a property
        of the data and robustness one of the chat model: each is measured once)."""
        chat = copy.deepcopy(self.cfg.eval)
        chat.model.path = str(self.chat_model())
        configs = [chat]
        if self.cfg.eval_base:
            base = copy.deepcopy(self.cfg.eval)
            base.out, base.model.path = str(self.root / "eval-base"), self.cfg.posttrain.base.model
            base.contamination.enabled = base.robustness.enabled = False
            configs.append(base)
        return configs

    def stage_eval(self) -> None:
        from herd.eval.run import EvalStage

        for ecfg in self.eval_configs():
            run_stage(EvalStage(ecfg))

    def stage_safety(self) -> None:
        from herd.safety.recipe import run_recipe_safety

        if not self.cfg.safety.enabled:
            log.info("safety: not enabled ([safety] enabled = true)")
            return
        run_recipe_safety(self.cfg.safety, self.chat_model(), Path(self.cfg.posttrain.base.model),
                          self.cfg.tokenize.tokenizer, Path(self.cfg.tokenize.out), self.root)  # fmt: skip

    def stage_vision(self) -> None:
        from herd.vision.recipe import run_recipe_vision

        run_recipe_vision(self.cfg.vision, self.root)

    def stage_speech(self) -> None:
        from herd.speech.recipe import run_recipe_speech

        section = self.cfg.speech
        if not section.enabled:
            log.info("speech: not enabled ([speech] enabled = true)")
            return
        run_recipe_speech(section, self.root, self.chat_model() if section.lm == "chat" else None)

    def stage_report(self) -> None:
        stages = {
            "corpus": Path(self.cfg.corpus.documents) if self.cfg.corpus.documents else self.root / "corpus",
            "curate": Path(self.cfg.curate.out),
            "tokenizer": Path(self.cfg.tokenizer.out),
            "tokens": Path(self.cfg.tokenize.out),
            "pretrain": Path(self.cfg.pretrain.run_dir),
            "posttrain": Path(self.cfg.posttrain.out),
            "eval": Path(self.cfg.eval.out),
            "eval_base": self.root / "eval-base",
            "safety": self.root / "safety",
            "memorization": self.root / "safety-memorization",
            "vision": self.root / "vision",
            "speech": self.root / "speech" / "model",
        }
        stages = {k: v for k, v in stages.items() if v.exists()}
        models = {"base": Path(self.cfg.posttrain.base.model), "chat": self.chat_model()}
        tokenizer = self.cfg.tokenize.tokenizer
        m = run_stage(ReportStage(ReportConfig(self.cfg.report, tokenizer), stages, models, self.root / "report"))
        log.info("report: %s", self.root / "report" / m.counts["index"])

    # ------------------------------------------------------------------ lineage

    def _write_lineage(self) -> None:
        """The run's own manifest: every stage folder with its manifest's hash, so the report (or a person)
        can walk from the chat model back to raw files, configs and versions."""
        records = []
        for folder in sorted(self.root.iterdir()):
            for m in sorted(folder.rglob(MANIFEST_NAME)) if folder.is_dir() else []:
                if "_work" not in m.parts:
                    records.append({"path": str(m.parent), "sha256": None, "manifest": sha256_file(m)})
        sources = self.cfg.corpus.documents or self.cfg.corpus.sources
        records.insert(0, {"path": sources, "sha256": None, "manifest": None})
        m = Manifest.build(self.root, "recipe", records, self.cfg, {"stages": self.walls})
        m.outputs = []  # the stage manifests list their own outputs
        m.save(self.root)


@dataclass
class ReportConfig:
    report: ReportSection
    tokenizer: str  # for the sample chats


@dataclass
class ReportStage(Stage):
    """The run report: reads the numbers each stage recorded, samples a few chats, renders HTML + PNGs."""

    name: ClassVar[str] = "report"
    config: ReportConfig
    stages: Mapping[str, Path]
    models: Mapping[str, Path]  # "base" and "chat" model folders, for the before/after chats
    out_dir: Path

    @property
    def out(self) -> Path:
        return Path(self.out_dir)

    def inputs(self) -> list[Path]:
        # The stage manifests stand for their folders: each already hashes what its stage wrote.
        found = [p / MANIFEST_NAME for p in self.stages.values() if (p / MANIFEST_NAME).is_file()]
        return [*found, *(m / "model.safetensors" for m in self.models.values())]

    def run(self, workdir: Path) -> dict[str, Any]:
        from herd.recipe.report import write_report

        chats = sample_chats(self.models, self.config)
        index = write_report(dict(self.stages), workdir, chats)
        return {"index": str(Path(index).relative_to(workdir)), "chats": chats}


def sample_chats(models: Mapping[str, Path], cfg: ReportConfig) -> list[dict[str, str]]:
    """Greedy answers of the base and the chat model to the report's prompts."""
    answers = {name: chat_answers(m, cfg.tokenizer, cfg.report) for name, m in models.items()}
    return [{"prompt": q} | {name: a[i] for name, a in answers.items()} for i, q in enumerate(cfg.report.prompts)]


def chat_answers(model_dir: Path, tokenizer: str, report: ReportSection) -> list[str]:
    import torch

    from herd.model import generate, load_model
    from herd.tokenizer import load_chat_format, load_tokenizer

    model = load_model(model_dir).eval()
    tok = load_tokenizer(tokenizer)
    chat = load_chat_format(tok)
    prompts = [chat.encode_prompt([{"role": "user", "content": q}]) for q in report.prompts]
    with torch.no_grad():
        outs = generate(model, prompts, max_new_tokens=report.max_new_tokens, stop_ids=sorted(tok.stop_ids))
    return [tok.decode(o).strip() for o in outs]


def dry_run(cfg: RecipeConfig) -> str:
    """Plan the run from the recipe's pretraining config (loading the recipe already checked every key)."""
    from herd.recipe.plan import plan

    pre = copy.deepcopy(cfg.pretrain)
    if not pre.model.vocab_size and not cfg.meta_tokenizer:  # the run trains its own tokenizer
        pre.model.vocab_size = cfg.tokenizer.vocab_size
    table = plan(pre, cfg.cluster, posttrain_rounds=cfg.posttrain.rounds).table()
    if pre.model.preset == "405B":  # the paper's vision job on top of the 405B [P §7]
        from herd.vision.plan import vision_405b_plan

        table += "\n" + vision_405b_plan()
    return table


def run_recipe(cfg: RecipeConfig, only: str | None = None) -> Path:
    """Run the recipe (or one stage of it); returns the report's index.html."""
    Recipe(cfg).run(only)
    return Path(cfg.run_dir) / "report" / "index.html"
