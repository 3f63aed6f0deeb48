"""The pretraining loop [P §3.4]: the phase machine's batch shape, LR, data mix and RoPE applied to one
`TrainStep` per global batch, with the spike guard, held-out loss, checkpoints, long-context gates and
annealing snapshots; `finish` exports at the end.

The same loop runs one process or many (torchrun): herd.parallel applies FSDP/TP/PP/CP to the model
from outside and TrainStep splits each global batch over the ranks, without changing the arithmetic.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from herd.core.config import ConfigError, save_resolved
from herd.core.logging import get_logger, progress
from herd.core.runtime import pick_device, pick_dtype, seed_everything
from herd.core.stage import StageFailed
from herd.data.loader import Batch, MixSchedule, TokenLoader, split_sources
from herd.data.shards import TokenShard
from herd.model.config import ModelConfig, flops_per_token
from herd.model.convert import build_from_state_dict
from herd.parallel.parallelize import ParallelContext
from herd.train import guard, phases
from herd.train.build import SHAPE_FIELDS, build_model, full_state, initial_weights, make_optimizer, model_config
from herd.train.checkpoint import Checkpointer
from herd.train.config import PretrainConfig, tokenizer_file
from herd.train.finish import finish, save_snapshot, unigram_entropy
from herd.train.metrics import MetricsLogger, measure_peak_flops, memory_bytes
from herd.train.phases import TrainState
from herd.train.step import ScaledLoss, StepOutcome, TrainStep, summed_token_loss
from herd.train.steptimes import StepClock
from herd.train.steptimes import report as steptime_report

if TYPE_CHECKING:
    from herd.eval.needle import NeedleResult

log = get_logger(__name__)

# model_config and summed_token_loss live in build and step; recipe, scaling and benchmarks import them here.
__all__ = ["Trainer", "model_config", "summed_token_loss"]


class Trainer:
    def __init__(self, cfg: PretrainConfig) -> None:
        started = time.time()  # the first start of a run is where its effective training time counts from
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        seed_everything(cfg.seed)
        self.device = pick_device(cfg.runtime.device)
        if self.device.type == "cuda" and "LOCAL_RANK" in os.environ:
            self.device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(self.device)
        self.dtype = pick_dtype(cfg.runtime.dtype, self.device)
        self.par = ParallelContext(cfg.parallel, self.device.type)
        # Everything is checked before anything is written: a bad config leaves the run folder as it was.
        self.sources = train_sources(cfg.data.shards)
        init = initial_weights(cfg.model.init_from) if cfg.model.init_from else None
        self.base_cfg = model_config(cfg, shard_vocab(self.sources, cfg.model.vocab_size), init and init[0])
        self.model_cfg = self.base_cfg  # long-context stages change RoPE from here (phases.rope_config)
        seq_lens = [s.seq_len for s in cfg.ramp.stages] + [lc.seq_len for lc in cfg.long_context]
        self.par.dims.check_model(self.base_cfg, seq_lens)
        self.ckpt = Checkpointer(
            self.run_dir / "checkpoints", cfg.checkpoint.keep, cfg.checkpoint.verify, self.par.is_main, self.par.barrier
        )
        check_same_model(self.ckpt, self.base_cfg)
        # Compiled, the fp32 upcast fuses into the log-softmax: the (tokens × vocab) fp32 logits are never
        # written out (7% of a 1B step on an H100, benchmarks/train_gpu.py). TP logits are DTensors: eager.
        compile_loss = cfg.runtime.compile and self.par.dims.tp == 1
        loss = ScaledLoss(torch.compile(summed_token_loss) if compile_loss else summed_token_loss)
        built = build_model(cfg, self.base_cfg, self.par, self.device, self.dtype, loss, init and init[1])
        self.model, self.pipeline = built.model, built.pipeline
        self.optim = make_optimizer(self.model, cfg, self.device)
        self.stepper = TrainStep(
            self.model, self.optim, self.par, self.pipeline, loss, self.device, self.dtype,
            cfg.ramp.micro_batch_size, cfg.optim.grad_clip, self.model_cfg.attn_impl,
        )  # fmt: skip
        self.main_mix = cfg.mix_schedule(self._token_weights())
        self.loader = TokenLoader(self.sources, self.main_mix, seed=cfg.data.seed, chunk_tokens=cfg.data.chunk_tokens)
        self.state = TrainState()
        self.rollbacks_to: Counter[str] = Counter()  # checkpoint folder name → rollbacks to it in this process
        self._last_val: tuple[int, float | None] | None = None  # (step, held-out loss) last measured
        self._last_bench: tuple[int, dict[str, float]] | None = None  # (step, in-loop benchmark scores)
        self._bench_tasks: dict = {}  # loaded once, on first use
        self.val_batches = self._val_batches()
        self.peak_flops = cfg.runtime.peak_flops or measure_peak_flops(self.device, self.dtype)
        if self.par.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_resolved(cfg, self.run_dir)
        self.clock = StepClock(self.run_dir, self.par.rank, self.par.barrier, started)
        self.metrics = MetricsLogger(self.run_dir, cfg.runtime.tensorboard, enabled=self.par.is_main)

    def _token_weights(self) -> dict[str, float]:
        """Default mix: each source in proportion to its tokens (natural sampling)."""
        return {n: float(sum(TokenShard(p).n_tokens for p in paths)) for n, paths in self.sources.items()}

    def _val_sources(self) -> dict[str, list[Path]]:
        root = self.cfg.eval.shards or self.cfg.data.shards
        if self.cfg.eval.shards and not Path(root).is_dir():
            raise ConfigError(f"eval.shards={root}: no such folder (a `herd tokenize` output folder)")
        try:
            return split_sources(root, "val")
        except FileNotFoundError:
            log.warning("no held-out shards (%s/<source>/val/): held-out loss is skipped", root)
            return {}

    def _val_batches(self, only: str | None = None) -> list[Batch]:
        """The held-out batches: every source weighted by its tokens, or source `only` alone."""
        e, val_sources = self.cfg.eval, self._val_sources()
        if only is not None:
            val_sources = {only: val_sources[only]}
        if not val_sources:
            return []
        seq = e.seq_len or self.cfg.ramp_schedule().stages[0].seq_len
        weights = {n: float(sum(TokenShard(p).n_tokens for p in ps)) for n, ps in val_sources.items()}
        loader = TokenLoader(val_sources, MixSchedule.constant(weights), seed=12345)
        return [loader.next_batch(e.batch_size, seq) for _ in range(e.batches)]

    def held_out_loss_by_source(self) -> dict[str, float | None]:
        """Held-out loss of the trained model on each held-out source alone (collective, like held_out_loss)."""
        return {n: self.stepper.held_out_loss(self._val_batches(n)) for n in self._val_sources()}

    def held_out_loss(self, model: torch.nn.Module | None = None) -> float | None:
        """On the trained model (collective), or on an unsharded copy (`model`, this rank alone)."""
        return self.stepper.held_out_loss(self.val_batches, model)

    # ------------------------------------------------------------------------------------------ a step
    def train_step(self) -> dict:
        s, cfg = self.state, self.cfg
        shape, lr = phases.batch_shape(s, cfg), phases.learning_rate(s, cfg)
        full = self.loader.next_batch(shape.batch_tokens // shape.seq_len, shape.seq_len)
        out = self.stepper(full, lr, partial(guard.skip_reason, s=s, g=cfg.guard))
        if out.skipped is None:
            self.state = guard.accepted(s, out.loss, shape.batch_tokens, cfg.guard)
        else:
            self._skip(out)
        return {"loss": out.loss, "lr": lr, "grad_norm": out.grad_norm, "seq_len": shape.seq_len,
                "batch_tokens": shape.batch_tokens, "skipped": out.skipped, "phase": s.phase}  # fmt: skip

    def _skip(self, out: StepOutcome) -> None:
        s = self.state = guard.skipped(self.state)
        log.warning("step %d: skipped update (%s, loss %.4g); %d in a row", s.step, out.skipped, out.loss,
                    s.consecutive_skips)  # fmt: skip
        if guard.must_roll_back(s, self.cfg.guard):
            self._rollback()

    def _rollback(self) -> None:
        """Back to the last checkpoint's weights and optimizer; the loader keeps going past the bad data.
        A checkpoint already rolled back to `guard.max_rollbacks` times is passed over for the one before it."""
        g = self.cfg.guard
        loader_state = self.loader.state_dict()
        skipped, rollbacks = self.state.skipped, self.state.rollbacks
        train_state = self.ckpt.load_latest(
            self.model, self.optim, lambda c: self.rollbacks_to[c.name] >= g.max_rollbacks
        )
        if train_state is None:
            tried = ", ".join(f"{n} ×{k}" for n, k in sorted(self.rollbacks_to.items())) or "no checkpoint"
            raise StageFailed(
                f"pretrain: {g.max_skips} skipped updates in a row after {rollbacks} rollbacks ({tried}; "
                f"guard.max_rollbacks={g.max_rollbacks}) and no checkpoint left to roll back to: lower optim.lr "
                "or check the data"
            )
        self.rollbacks_to[Checkpointer.name(train_state["state"]["step"])] += 1
        self.state = dataclasses.replace(TrainState(**train_state["state"]), skipped=skipped, rollbacks=rollbacks + 1)
        self._apply_phase()
        self.loader.load_state_dict(loader_state)
        self.metrics.rewind(self.state.step)  # the steps after it are redone: their records would repeat
        log.warning("rolled back to step %d after %d skipped updates (rollback %d)", self.state.step, g.max_skips,
                    rollbacks + 1)  # fmt: skip

    # ------------------------------------------------------------------------------------------ phases
    def _apply_phase(self) -> None:
        """Give the model the RoPE and the loader the mix of the current phase."""
        rope = phases.rope_config(self.base_cfg, self.cfg, self.state.long_stage)
        if rope != self.model_cfg:
            self.model_cfg = rope
            self.model.cfg = rope
            self.model.init_buffers()  # the RoPE frequencies are buffers computed from the config
        self.loader.mix = phases.data_mix(self.state, self.cfg, self.main_mix)

    def _advance_phase(self) -> None:
        s, cfg = self.state, self.cfg
        if s.phase == "main" and phases.main_done(s, cfg):
            self._begin(0)
        elif s.phase == "long" and phases.gate_due(s, cfg) and self._long_gate():
            self._begin(s.long_stage + 1)
        elif s.phase == "anneal" and phases.anneal_done(s, cfg):
            self.state = dataclasses.replace(s, phase="done")

    def _begin(self, next_long: int) -> None:
        """Main pretraining → long-context stages → annealing → done [P §3.4]."""
        # A long-context stage must bring short-context loss back to where it started [P §3.4.2].
        baseline = (self.held_out_loss() or 0.0) if next_long < len(self.cfg.long_context) else 0.0
        s = self.state = phases.begin(self.state, self.cfg, next_long, baseline)
        self._apply_phase()
        if s.phase == "long":
            seq_len = self.cfg.long_context[s.long_stage].seq_len
            log.info("long-context stage %d: seq %d from step %d", s.long_stage, seq_len, s.step)
        elif s.phase == "anneal":
            log.info("annealing from step %d: LR %.3g → 0 over %d tokens", s.step, s.anneal_start_lr,
                     self.cfg.anneal.tokens)  # fmt: skip

    def _long_gate(self) -> bool:
        """Measure the current long-context stage's gate; True (and its result recorded) when it ends."""
        s = self.state
        lc = self.cfg.long_context[s.long_stage]
        loss = self.held_out_loss()
        needle = self.needle(lc.seq_len) if lc.needle else None
        passed = phases.recovered(s, self.cfg, loss) and (needle is None or needle.passed)
        if not phases.gate_ends(s, self.cfg, passed):
            return False
        result = {"stage": s.long_stage, "seq_len": lc.seq_len, "start": s.long_start_tokens,
                  "tokens": phases.long_tokens(s), "passed": passed, "short_loss": loss, "baseline": s.long_baseline,
                  "needle": needle and needle.found}  # fmt: skip
        self.state = phases.end_long_stage(s, result)
        (log.info if passed else log.warning)("long-context stage %d ended: %s", s.long_stage, result)
        return True

    def needle(self, length: int) -> NeedleResult | None:
        from herd.eval.needle import haystack_tokens, needle_probe
        from herd.tokenizer import load_tokenizer

        path = tokenizer_file(self.cfg.data)
        if path is None or not self.val_batches:
            return None
        tok = load_tokenizer(path)
        drop = {t for t in (tok.bos_id, tok.eos_id) if t is not None}
        hay = haystack_tokens([b.tokens.flatten() for b in self.val_batches], length, drop)
        if len(hay) < length:
            log.warning("needle probe skipped: %d held-out tokens, %d needed", len(hay), length)
            return None
        if self.par.mesh is None:
            return needle_probe(self.model, tok, hay, length, seed=self.state.step)
        # Sharded or pipelined: generate with an unsharded copy on rank 0 and share the verdict.
        state = self.full_state()
        result = None
        if self.par.is_main:
            probe_model = build_from_state_dict(self.model_cfg, state, "needle probe").to(self.device)
            result = needle_probe(probe_model, tok, hay, length, seed=self.state.step)
        return self.par.broadcast(result)

    def _maybe_snapshot(self) -> None:
        """Keep evenly spaced annealing weights for the Polyak average (safetensors, model only)."""
        if not phases.snapshot_due(self.state, self.cfg):
            return
        weights = self.full_state()  # collective under FSDP/TP/PP: every rank takes part
        if self.par.is_main:
            save_snapshot(self.run_dir, self.state.step, weights)
        self.state = dataclasses.replace(self.state, anneal_snapshots=[*self.state.anneal_snapshots, self.state.step])

    def full_state(self) -> dict[str, torch.Tensor]:
        return full_state(self.model, self.par, self.pipeline is not None)

    # ------------------------------------------------------------------------------------------ checkpoints
    def save(self) -> None:
        rng = {"torch": torch.get_rng_state().tolist()}
        train_state = {
            "state": dataclasses.asdict(self.state), "loader": self.loader.state_dict(), "rng": rng,
            "model": model_shape(self.base_cfg),  # checked against the config before a resume writes anything
        }  # fmt: skip
        self.ckpt.save(self.state.step, self.model, self.optim, train_state)

    def resume(self) -> bool:
        train_state = self.ckpt.load_latest(self.model, self.optim)
        if train_state is None:
            found = self.ckpt.list()
            if found and not self.cfg.checkpoint.start_over:
                raise StageFailed(
                    f"pretrain: none of the {len(found)} checkpoints in {self.ckpt.folder} can be trusted (see the "
                    "warnings above); set checkpoint.start_over=true to train from step 0, or use another run_dir"
                )
            self.metrics.rewind(0)  # starting over: an earlier attempt's records are not this run's
            return False
        self.state = phases.resumed(TrainState(**train_state["state"]), self.cfg)
        self._apply_phase()
        self.loader.load_state_dict(train_state["loader"])
        torch.set_rng_state(torch.tensor(train_state["rng"]["torch"], dtype=torch.uint8))
        self.metrics.rewind(self.state.step)  # steps after the checkpoint are redone
        return True

    # ------------------------------------------------------------------------------------------ the run
    def fit(self) -> dict:
        start = time.perf_counter()
        resumed = self.resume()
        cfg = self.cfg
        with progress() as bar:
            task = bar.add_task("pretrain", total=cfg.schedule.max_steps or None, completed=self.state.step)
            t_last, tok_last = time.perf_counter(), self.state.tokens
            while self.state.phase != "done":
                self.clock.start(self.state.step + 1)
                out = self.train_step()
                self.clock.stop()
                self._advance_phase()
                self._maybe_snapshot()
                step, applied = self.state.step, out["skipped"] is None
                if applied and step % cfg.runtime.log_every == 0:
                    now = time.perf_counter()
                    self._log_train(out, (self.state.tokens - tok_last) / max(now - t_last, 1e-9))
                    t_last, tok_last = now, self.state.tokens
                    bar.update(task, completed=step, description=f"pretrain loss {out['loss']:.3f}")
                if applied and cfg.eval.every and step % cfg.eval.every == 0:
                    self._log_val()
                if applied and cfg.eval.benchmarks and step % (cfg.eval.benchmark_every or cfg.eval.every or step) == 0:
                    self._log_benchmarks()
                if applied and cfg.checkpoint.every and step % cfg.checkpoint.every == 0:
                    self.save()
        return self._finish(resumed, start)

    def _log_train(self, out: dict, tokens_per_s: float) -> None:
        s = self.state
        record = {"kind": "train", "step": s.step, "tokens": s.tokens, "tokens_per_s": tokens_per_s}
        record.update({k: out[k] for k in ("phase", "loss", "lr", "grad_norm", "seq_len", "batch_tokens")})
        record["mfu"] = tokens_per_s * flops_per_token(self.model_cfg, out["seq_len"]) / self.peak_flops
        record["memory_bytes"] = memory_bytes(self.device)
        record["skipped_total"] = s.skipped
        self.metrics.log(record)

    def _log_val(self) -> float | None:
        """Held-out loss at this step, measured and logged once (the last step may be an eval step too)."""
        if self._last_val is not None and self._last_val[0] == self.state.step:
            return self._last_val[1]
        val = self.held_out_loss()
        if val is not None:
            self.metrics.log({"kind": "val", "step": self.state.step, "tokens": self.state.tokens, "loss": val})
        self._last_val = (self.state.step, val)
        return val

    def _log_benchmarks(self) -> dict[str, float]:
        """The in-loop benchmark scores at this step (collective under FSDP/TP/PP), logged once per step."""
        if self._last_bench is not None and self._last_bench[0] == self.state.step:
            return self._last_bench[1]
        scores = self.benchmark_scores()
        if scores:
            self.metrics.log({"kind": "bench", "step": self.state.step, "tokens": self.state.tokens, **scores})
        self._last_bench = (self.state.step, scores)
        return scores

    def benchmark_scores(self) -> dict[str, float]:
        """{task: score} for `eval.benchmarks` on their first `benchmark_limit` examples, zero-shot."""
        from herd.eval.harness import evaluate
        from herd.eval.scorer import HerdScorer
        from herd.eval.tasks import load_jsonl_task, load_task
        from herd.tokenizer import load_tokenizer

        e = self.cfg.eval
        path = tokenizer_file(self.cfg.data)
        if path is None:
            log.warning("in-loop benchmarks skipped: no tokenizer beside %s", self.cfg.data.shards)
            return {}
        model = self.model
        if self.par.mesh is not None:  # sharded or pipelined: score an unsharded copy on rank 0
            state = self.full_state()
            if not self.par.is_main:
                return self.par.broadcast(None)
            model = build_from_state_dict(self.model_cfg, state, "in-loop benchmarks").to(self.device)
        if not self._bench_tasks:
            load = lambda n: load_jsonl_task(n) if n.endswith(".jsonl") else load_task(n)
            self._bench_tasks = {Path(n).stem if n.endswith(".jsonl") else n: load(n) for n in e.benchmarks}
        scorer = HerdScorer(model, load_tokenizer(path))
        training = model.training
        scores = {n: evaluate(t, scorer, limit=e.benchmark_limit).score for n, t in self._bench_tasks.items()}
        model.train(training)  # the scorer switched it to eval mode
        return scores if self.par.mesh is None else self.par.broadcast(scores)

    def _finish(self, resumed: bool, start: float) -> dict:
        """Final checkpoint and held-out loss (every rank), then rank 0 exports and summarizes."""
        self.save()
        final_loss = self._log_val()
        final_bench = self._log_benchmarks() if self.cfg.eval.benchmarks else {}
        by_source = self.held_out_loss_by_source() if self.cfg.eval.by_source else {}
        weights = self.full_state()
        if not self.par.is_main:
            self.par.barrier()
            return {}
        s = self.state
        summary = {
            "steps": s.step,
            "tokens": s.tokens,
            "skipped": s.skipped,
            "rollbacks": s.rollbacks,
            "resumed": resumed,
            "held_out_loss_last": final_loss,
            **({"benchmarks_last": final_bench} if final_bench else {}),
            **({"held_out_loss_by_source": by_source} if by_source else {}),
            "unigram_entropy": unigram_entropy(self.sources),
            "long_context": s.long_results,
            "wall_s": round(time.perf_counter() - start, 3),  # this process: a resumed run counts from its restart
        }
        summary |= steptime_report(self.run_dir)  # stragglers.json, effective training time since the first start
        summary = finish(
            self.run_dir, self.model_cfg, s, weights, self.held_out_loss, summary,
            phases.boundaries(s, self.cfg), tokenizer_file(self.cfg.data),
        )  # fmt: skip
        self.metrics.close()
        self.par.barrier()
        return summary


# ---------------------------------------------------------------------------------- checks before a run


def train_sources(shards: str) -> dict[str, list[Path]]:
    """The `<source>/train/*.bin` shards of `data.shards`, or a one-line ConfigError naming the key."""
    root = Path(shards)
    if not root.exists():
        raise ConfigError(f"data.shards={shards}: no such folder (a `herd tokenize` output folder)")
    if not root.is_dir():
        raise ConfigError(f"data.shards={shards}: a file, expected a `herd tokenize` output folder")
    try:
        return split_sources(root, "train")
    except FileNotFoundError:
        raise ConfigError(f"data.shards={shards}: no token shards under <source>/train/") from None


def shard_vocab(sources: dict[str, list[Path]], model_vocab: int) -> int:
    """The shards' vocabulary; a set `model.vocab_size` must hold every id they can contain."""
    vocab = max(TokenShard(p).vocab_size for paths in sources.values() for p in paths)
    if model_vocab and model_vocab < vocab:
        raise ConfigError(f"model.vocab_size={model_vocab} is smaller than the shards' vocabulary {vocab}")
    return vocab


def model_shape(cfg: ModelConfig) -> dict:
    """The fields a checkpoint's tensors depend on, as a checkpoint records them."""
    return {k: getattr(cfg, k) for k in SHAPE_FIELDS}


def check_same_model(ckpt: Checkpointer, model_cfg: ModelConfig) -> None:
    """A run folder's checkpoints must fit the configured model; said before config.resolved.toml is
    rewritten, so the folder still describes the run its checkpoints belong to."""
    saved = (ckpt.newest_train_state() or {}).get("model")
    if not isinstance(saved, dict):
        return  # no checkpoint yet (or one from before shapes were recorded: DCP's load checks it)
    now = model_shape(model_cfg)
    diffs = [f"model.{k}: checkpoint {saved[k]}, config {v}" for k, v in now.items() if saved.get(k, v) != v]
    if diffs:
        raise StageFailed(
            f"pretrain: {ckpt.folder} holds checkpoints of another model ({'; '.join(diffs)}): use the same model "
            "settings to resume, or another run_dir"
        )
