"""`herd recipe CONFIG`: the whole Llama 3 recipe on one run folder, stage by stage.

corpus → curate → tokenizer → tokenize → pretrain (ramps, annealing, Polyak average) → posttrain
(RM → RS → SFT → DPO rounds) → eval (chat and base model; contamination against the run's own shards)
→ report. Every stage writes its folder under `run_dir` with a MANIFEST.json; a rerun skips each stage
whose manifest matches its inputs and config, so a killed recipe picks up at the stage it was in
(pretraining resumes from its last checkpoint). `--stage NAME` runs one stage on the outputs already
there; changed overrides change its config hash, so it and everything downstream run again.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.core.config import dump_toml, load_config
from herd.core.io import MANIFEST_NAME, atomic_write_text, sha256_file
from herd.core.logging import get_logger
from herd.core.manifest import Manifest, ManifestError
from herd.core.stage import run_fn
from herd.recipe.config import STAGES, RecipeConfig, StageSection

log = get_logger(__name__)


@dataclass(frozen=True)
class Paths:
    """Where each stage writes, under one run folder."""

    root: Path

    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    @property
    def curate(self) -> Path:
        return self.root / "curate"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def tokens(self) -> Path:
        return self.root / "tokens"

    @property
    def pretrain(self) -> Path:
        return self.root / "pretrain"

    @property
    def posttrain(self) -> Path:
        return self.root / "posttrain"

    @property
    def posttrain_data(self) -> Path:
        return self.root / "posttrain-data"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def eval_base(self) -> Path:
        return self.root / "eval-base"

    @property
    def report(self) -> Path:
        return self.root / "report"


@dataclass
class Recipe:
    cfg: RecipeConfig
    judges: Callable[[str], Any] | None = None  # curation's LLM judge factory (the CLI passes herd's)
    walls: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.paths = Paths(Path(self.cfg.run_dir))

    # ------------------------------------------------------------------ driver

    def run(self, only: str | None = None) -> dict[str, Any]:
        if only is not None and only not in STAGES:
            raise ValueError(f"--stage {only!r}: choose one of {', '.join(STAGES)}")
        self.paths.root.mkdir(parents=True, exist_ok=True)
        (self.paths.root / "recipe.resolved.toml").write_text(dump_toml(self.cfg))
        for name in STAGES if only is None else (only,):
            start = time.perf_counter()
            log.info("recipe: stage %s", name)
            getattr(self, f"stage_{name}")()
            self.walls[name] = {"wall_s": round(time.perf_counter() - start, 1)}
        self._write_lineage()
        return self.walls

    # ------------------------------------------------------------------ stages

    def stage_corpus(self) -> Path:
        c = self.cfg.corpus
        if c.documents:
            if not Path(c.documents).is_dir():
                raise FileNotFoundError(f"corpus.documents: no such folder {c.documents}")
            return Path(c.documents)
        from herd.data.bundle import build_corpus

        def build(tmp: Path) -> dict[str, Any]:
            files = build_corpus(c.sources, tmp / "documents")
            return {"files": files, "documents": sum(files.values())}

        if not Path(c.sources).is_dir():
            raise FileNotFoundError(f"corpus.sources: no folder {c.sources} (run scripts/fetch_corpus.sh {c.sources})")
        run_fn("corpus", [c.sources], c, self.paths.corpus, build)
        return self.paths.corpus / "documents"

    def corpus_documents(self) -> Path:
        return Path(self.cfg.corpus.documents) if self.cfg.corpus.documents else self.paths.corpus / "documents"

    def curate_config(self):
        from herd.data.pipeline import CurateConfig

        wired = [f"inputs=['{self.corpus_documents()}']", f"out={self.paths.curate}"]
        ccfg = stage_config(CurateConfig, self.cfg.curate, wired)
        if not self.cfg.corpus.documents and ccfg.heuristics.dirty_words_dir:
            # The bundled corpus brings its own dirty-word lists (npm naughty-words) beside the documents.
            ccfg.heuristics.dirty_words_dir = str(self.paths.corpus / "documents-resources" / "ldnoobw")
        return ccfg

    def stage_curate(self) -> Path:
        from herd.data.pipeline import run_curation

        ccfg = self.curate_config()
        judge = self.judges(ccfg.quality.judge) if self.judges and ccfg.quality.judge != "none" else None
        run_curation(ccfg, judge)
        return self.mix_dir()

    def mix_dir(self) -> Path:
        """The last curation stage's folder: kept/<bucket>/, anneal/, mix_weights.json."""
        from herd.data.pipeline import stage_plan

        plan = stage_plan(self.curate_config())
        return self.paths.curate / f"{len(plan):02d}_{plan[-1][0]}"

    def tokenizer_file(self) -> str:
        t = self.cfg.tokenizer
        return t.base if t.base == "llama3" else str(self.paths.tokenizer / "tokenizer.model")

    def stage_tokenizer(self) -> None:
        from herd.tokenizer.train import TokenizerTrainConfig, train_stage

        t = self.cfg.tokenizer
        if t.base == "llama3":
            log.info("tokenizer: Meta's Llama 3 tokenizer (no training)")
            return
        tcfg = TokenizerTrainConfig(
            inputs=[str(self.mix_dir() / "kept")], out=str(self.paths.tokenizer), vocab_size=t.vocab_size,
            min_frequency=t.min_frequency, max_chars=t.max_chars, base=t.base,
        )  # fmt: skip
        train_stage(tcfg)

    def tokenize_sources(self) -> dict[str, list[str]]:
        """One source per curated bucket with documents, plus the annealing subset as "anneal"."""
        mix = self.mix_dir()
        folders = {d.name: d for d in sorted((mix / "kept").iterdir()) if d.is_dir()}
        if (mix / "anneal").is_dir():
            folders["anneal"] = mix / "anneal"
        return {name: [str(d)] for name, d in folders.items() if any(p.is_file() for p in d.rglob("*"))}

    def stage_tokenize(self) -> None:
        from herd.data.tokenize import TokenizeConfig, tokenize

        t = self.cfg.tokenize
        tcfg = TokenizeConfig(
            tokenizer=self.tokenizer_file(), sources=self.tokenize_sources(), out=str(self.paths.tokens),
            val_fraction=t.val_fraction, workers=t.workers,
        )  # fmt: skip
        tokenize(tcfg)

    def pretrain_config(self):
        from herd.train.config import PretrainConfig

        wired = [f"data.shards={self.paths.tokens}", f"run_dir={self.paths.pretrain}", f"seed={self.cfg.seed}"]
        pcfg = stage_config(PretrainConfig, self.cfg.pretrain, wired)
        weights = self._mix_weights()
        if weights and not pcfg.data.mix:
            pcfg.data.mix = weights | ({"anneal": 0.0} if "anneal" in self._token_sources() else {})
        if weights and pcfg.anneal.tokens and not pcfg.anneal.mix and "anneal" in self._token_sources():
            share, total = self.cfg.pretrain.anneal_share, sum(weights.values())
            pcfg.anneal.mix = {k: (1 - share) * w / total for k, w in weights.items()} | {"anneal": share}
        return pcfg

    def _token_sources(self) -> set[str]:
        return {d.name for d in self.paths.tokens.iterdir() if d.is_dir()} if self.paths.tokens.is_dir() else set()

    def _mix_weights(self) -> dict[str, float]:
        """Curation's data-mix weights [P §3.1.2] for the buckets that were tokenized."""
        path = self.mix_dir() / "mix_weights.json"
        if not path.is_file():
            return {}
        buckets = json.loads(path.read_text())["buckets"]
        present = self._token_sources()
        return {k: float(b["weight"]) for k, b in buckets.items() if k in present and b["weight"] > 0}

    def stage_pretrain(self) -> Path:
        from herd.train.loop import pretrain

        pcfg, run_dir = self.pretrain_config(), self.paths.pretrain
        if done(run_dir, "pretrain", [pcfg.data.shards], pcfg):
            log.info("skip pretrain: %s matches its inputs and config", run_dir)
            return run_dir / "base"
        resolved = run_dir / "config.resolved.toml"
        if resolved.is_file() and resolved.read_text() != dump_toml(pcfg):
            # Checkpoints of another config must not be resumed into this one.
            log.warning("pretrain: %s holds a run with another config; starting afresh", run_dir)
            shutil.rmtree(run_dir)
        pretrain(pcfg)
        return run_dir / "base"

    def posttrain_config(self):
        from herd.posttrain.rounds import PosttrainConfig

        wired = [
            f"out={self.paths.posttrain}", f"base.model={self.paths.pretrain / 'base'}",
            f"base.tokenizer={self.tokenizer_file()}", f"bundle.out={self.paths.posttrain_data}",
            f"seed={self.cfg.seed}",
        ]  # fmt: skip
        return stage_config(PosttrainConfig, self.cfg.posttrain, wired)

    def stage_posttrain(self) -> Path:
        from herd.posttrain.rounds import report_counts, run_posttrain

        pcfg, out = self.posttrain_config(), self.paths.posttrain
        # The data bundle is built inside post-training; a changed or missing bundle reruns it too.
        inputs = [self.paths.pretrain / "base", self.paths.posttrain_data]
        if not (self.paths.posttrain_data.is_dir() and done(out, "posttrain", inputs, pcfg)):
            summary = run_posttrain(pcfg)
            counts = report_counts(summary)
            Manifest.write(out, "posttrain", inputs, pcfg, counts, summary.get("wall_s", 0.0))
        return self.chat_model()

    def chat_model(self) -> Path:
        return Path(json.loads((self.paths.posttrain / "summary.json").read_text())["final_model"])

    def eval_config(self, base: bool):
        from herd.eval.config import EvalConfig

        model = self.paths.pretrain / "base" if base else self.chat_model()
        wired = [
            f"out={self.paths.eval_base if base else self.paths.eval}", f"model.path={model}",
            f"model.tokenizer={self.tokenizer_file()}", f"contamination.shards={self.paths.tokens}",
            f"contamination.tokenizer={self.tokenizer_file()}",
        ]  # fmt: skip
        if base:  # contamination is a property of the data, robustness of the chat model: once each
            wired += ["contamination.enabled=false", "robustness.enabled=false"]
        return stage_config(EvalConfig, self.cfg.eval, wired)

    def stage_eval(self) -> None:
        from herd.eval.run import run_eval

        for base in (False, True) if self.cfg.eval.base else (False,):
            ecfg = self.eval_config(base)
            inputs = [p for p in (Path(ecfg.model.path), Path(ecfg.contamination.shards or "-")) if p.exists()]
            if done(Path(ecfg.out), "eval", inputs, ecfg):
                log.info("skip eval: %s matches its inputs and config", ecfg.out)
                continue
            run_eval(ecfg)

    def stage_report(self) -> Path:
        from herd.recipe.report import write_report

        chats = self.sample_chats()
        names = ("corpus", "curate", "tokenizer", "tokens", "pretrain", "posttrain", "eval", "eval_base")
        stages = {name: getattr(self.paths, name) for name in names}
        if self.cfg.corpus.documents:
            stages["corpus"] = Path(self.cfg.corpus.documents)
        index = write_report({k: v for k, v in stages.items() if v.exists()}, self.paths.report, chats)
        log.info("report: %s", index)
        return index

    def sample_chats(self) -> list[dict[str, str]]:
        """Greedy answers of the base and the chat model to the report's prompts, cached by model manifests."""
        base, chat = self.paths.pretrain / "base", self.chat_model()
        key = [sha256_file(base / "model.safetensors"), sha256_file(chat / "model.safetensors")]
        key += [self.cfg.report.prompts, self.cfg.report.max_new_tokens]
        cache = self.paths.report / "chats.json"
        if cache.is_file() and (old := json.loads(cache.read_text())).get("key") == key:
            return old["chats"]
        answers = {name: chat_answers(m, self.tokenizer_file(), self.cfg.report) for name, m in (("base", base),
                   ("chat", chat))}  # fmt: skip
        chats = [{"prompt": q, "base": answers["base"][i], "chat": answers["chat"][i]}
                 for i, q in enumerate(self.cfg.report.prompts)]  # fmt: skip
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache, json.dumps({"key": key, "chats": chats}, indent=2, ensure_ascii=False) + "\n")
        return chats

    # ------------------------------------------------------------------ lineage

    def _write_lineage(self) -> None:
        """The run's own manifest: every stage folder with its manifest's hash, so the report (or a person)
        can walk from the chat model back to raw files, configs and versions."""
        records = []
        for folder in sorted(self.paths.root.iterdir()):
            for m in sorted(folder.rglob(MANIFEST_NAME)) if folder.is_dir() else []:
                if "_work" not in m.parts:
                    records.append({"path": str(m.parent), "sha256": None, "manifest": sha256_file(m)})
        sources = self.cfg.corpus.documents or self.cfg.corpus.sources
        records.insert(0, {"path": sources, "sha256": None, "manifest": None})
        m = Manifest.build(self.paths.root, "recipe", records, self.cfg, {"stages": self.walls})
        m.outputs = []  # the stage manifests list their own outputs
        m.save(self.paths.root)


def stage_config(cls: type, section: StageSection, wired: list[str]):
    """A stage's config: its own TOML, the recipe's overrides for it, then the paths the recipe wires."""
    return load_config(cls, section.config or None, [*section.overrides, *wired])


def done(out: Path, stage: str, inputs: list, config: Any) -> bool:
    """A stage folder whose manifest matches these inputs and this config, with every output present."""
    try:
        m = Manifest.find(out)
    except ManifestError as e:
        log.warning("%s; running the stage again", e)
        return False
    return m is not None and m.stage == stage and m.matches(inputs, config) and m.complete(out)


def chat_answers(model_dir: Path, tokenizer: str, report) -> list[str]:
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
    """Build every stage's config as the recipe would (typos fail here, naming the key) and plan the run."""
    from herd.recipe.plan import plan

    r = Recipe(cfg)
    r.curate_config()
    r.eval_config(base=True)
    rounds = r.posttrain_config().rounds
    pre = r.pretrain_config()
    if not pre.model.vocab_size and not cfg.tokenizer.base:  # the run trains its own tokenizer
        pre.model.vocab_size = cfg.tokenizer.vocab_size
    return plan(pre, cfg.cluster, posttrain_rounds=rounds).table()


def run_recipe(cfg: RecipeConfig, only: str | None = None, judges: Callable[[str], Any] | None = None) -> Path:
    """Run the recipe (or one stage of it); returns the report's index.html."""
    Recipe(cfg, judges).run(only)
    return Path(cfg.run_dir) / "report" / "index.html"
