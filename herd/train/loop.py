"""The pretraining loop [P §3.4]: ramps, schedules, guard, held-out loss, checkpoints, annealing, averaging.

One process today; the parallelism issue applies FSDP/TP/PP/CP to the model from outside (herd.parallel)
and gives the loader its data-parallel rank, without changing this loop's arithmetic.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from herd.core.config import save_resolved
from herd.core.logging import get_logger, progress
from herd.core.manifest import Manifest
from herd.core.runtime import autocast, pick_device, pick_dtype, seed_everything
from herd.data.loader import IGNORE_INDEX, Batch, MixSchedule, TokenLoader, split_sources
from herd.data.shards import TokenShard
from herd.model import Transformer, get_preset
from herd.model.config import ModelConfig, RopeScaling, flops_per_token
from herd.model.convert import build_from_state_dict, save_hf
from herd.parallel.cp import chunk_indices
from herd.parallel.grads import clip_grad_norm
from herd.parallel.init import init_parallel_weights
from herd.parallel.parallelize import Parallel
from herd.parallel.pp import Pipeline, StageParts, rank_stages, stage_model
from herd.train.averaging import average_state_dicts
from herd.train.checkpoint import Checkpointer
from herd.train.config import PretrainConfig
from herd.train.metrics import MetricsLogger, curve_record, measure_peak_flops, memory_bytes, plot_run
from herd.train.schedules import RampStage, anneal_lr

if TYPE_CHECKING:
    from herd.eval.needle import NeedleResult
    from herd.tokenizer import TokenizerLike

log = get_logger(__name__)


@dataclass
class TrainState:
    """Everything besides model, optimizer and loader that a resumed run needs to continue exactly."""

    step: int = 0
    tokens: int = 0
    phase: str = "main"  # main → long (one per long-context stage) → anneal → done
    long_stage: int = -1
    long_start_tokens: int = 0
    long_baseline: float = 0.0
    long_results: list[dict] = field(default_factory=list)
    anneal_start_tokens: int = 0
    anneal_start_lr: float = 0.0
    anneal_snapshots: list[int] = field(default_factory=list)
    skipped: int = 0
    consecutive_skips: int = 0
    rollbacks: int = 0
    loss_ema: float = 0.0
    ema_steps: int = 0


def model_config(cfg: PretrainConfig, vocab_size: int) -> ModelConfig:
    m = cfg.model
    overrides = {k: getattr(m, k) for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len")}
    overrides = {k: v for k, v in overrides.items() if v}
    if m.tie_embeddings is not None:
        overrides["tie_embeddings"] = m.tie_embeddings
    return get_preset(m.preset, vocab_size=m.vocab_size or vocab_size, attn_impl=m.attn_impl, **overrides)


class Trainer:
    def __init__(self, cfg: PretrainConfig) -> None:
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_resolved(cfg, self.run_dir)
        seed_everything(cfg.seed)
        self.device = pick_device(cfg.runtime.device)
        if self.device.type == "cuda" and "LOCAL_RANK" in os.environ:
            self.device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(self.device)
        self.dtype = pick_dtype(cfg.runtime.dtype, self.device)
        self.par = Parallel(cfg.parallel, self.device.type)
        self.sources = split_sources(cfg.data.shards, "train")
        vocab = max(TokenShard(p).vocab_size for paths in self.sources.values() for p in paths)
        self.model_cfg = model_config(cfg, vocab)
        seq_lens = [s.seq_len for s in cfg.ramp.stages] + [lc.seq_len for lc in cfg.long_context]
        self.par.dims.check_model(self.model_cfg, seq_lens)
        self.model = self._build_model()
        # Compiled, the fp32 upcast fuses into the log-softmax: the (tokens × vocab) fp32 logits are never
        # written out (7% of a 1B step on an H100, benchmarks/train_gpu.py). TP logits are DTensors: eager.
        compile_loss = cfg.runtime.compile and self.par.dims.tp == 1
        self.token_loss = torch.compile(summed_token_loss) if compile_loss else summed_token_loss
        self.optim = torch.optim.AdamW(
            self.model.parameters(),
            lr=cfg.optim.lr,
            betas=cfg.optim.betas,
            eps=cfg.optim.eps,
            weight_decay=cfg.optim.weight_decay,
            # One fused CUDA kernel for the whole update on GPUs; CPUs have no fused AdamW kernel.
            **({"fused": True} if self.device.type == "cuda" else {"foreach": True}),
        )
        self.lr_schedule, self.ramp = cfg.lr_schedule(), cfg.ramp_schedule()
        self.main_mix = cfg.mix_schedule(self._token_weights())
        self.loader = TokenLoader(self.sources, self.main_mix, seed=cfg.data.seed, chunk_tokens=cfg.data.chunk_tokens)
        self.state = TrainState()
        self.ckpt = Checkpointer(
            self.run_dir / "checkpoints", cfg.checkpoint.keep, cfg.checkpoint.verify, self.par.is_main, self.par.barrier
        )
        self.metrics = MetricsLogger(self.run_dir, cfg.runtime.tensorboard, enabled=self.par.is_main)
        self.val_batches = self._val_batches()
        self.peak_flops = cfg.runtime.peak_flops or measure_peak_flops(self.device, self.dtype)

    def _build_model(self) -> torch.nn.Module:
        with torch.device("meta"):
            model = Transformer(self.model_cfg)
        pc, dims, self.pipeline = self.cfg.parallel, self.par.dims, None
        if dims.pp == 1:
            return self._materialize(model)
        n_stages = dims.pp * dims.stages_per_rank
        mine = rank_stages(self.par.coordinate("pp"), dims.pp, dims.stages_per_rank)
        parts = {i: self._materialize(stage_model(model, i, n_stages, pc.pp_lighter_ends)) for i in mine}
        tied = self.par.ends_group("pp") if self.model_cfg.tie_embeddings else None
        self.pipeline = Pipeline(
            parts, n_stages, self.par.group("pp"), self.device, pc.pp_schedule,
            pc.pp_microbatches or dims.pp, self._pipeline_loss, tied,
        )  # fmt: skip
        return StageParts(list(parts.values()))

    def _materialize(self, model: Transformer) -> Transformer:
        """Parallelize a meta-device model (or pipeline stage), allocate it, and give it the seed's weights."""
        rt = self.cfg.runtime
        self.par.apply(model, self.model_cfg, self.dtype, rt.activation_checkpointing, rt.compile)
        model.to_empty(device=self.device)
        if self.par.mesh is None:
            model.init_weights(seed=self.cfg.seed)
        else:
            init_parallel_weights(model, self.model_cfg, self.cfg.seed)
        return model

    def _pipeline_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.token_loss(logits, labels) * self._loss_scale

    def _token_weights(self) -> dict[str, float]:
        """Default mix: each source in proportion to its tokens (natural sampling)."""
        return {n: float(sum(TokenShard(p).n_tokens for p in paths)) for n, paths in self.sources.items()}

    def _val_batches(self) -> list[Batch]:
        e = self.cfg.eval
        try:
            val_sources = split_sources(self.cfg.data.shards, "val")
        except FileNotFoundError:
            log.warning("no held-out shards (<source>/val/): held-out loss is skipped")
            return []
        seq = e.seq_len or self.ramp.stages[0].seq_len
        weights = {n: float(sum(TokenShard(p).n_tokens for p in ps)) for n, ps in val_sources.items()}
        loader = TokenLoader(val_sources, MixSchedule.constant(weights), seed=12345)
        return [loader.next_batch(e.batch_size, seq) for _ in range(e.batches)]

    # ------------------------------------------------------------------------------------------------
    def local_rows(self, batch: Batch) -> Batch:
        """This data-parallel rank's rows of a global batch (the same global batch for every layout)."""
        dp, r = self.par.dims.dp, self.par.coordinate("dp")
        n = batch.tokens.shape[0]
        if n % dp:
            raise ValueError(f"a batch of {n} sequences cannot be split over {dp} data-parallel ranks")
        rows = slice(r * n // dp, (r + 1) * n // dp)
        return Batch(batch.tokens[rows], batch.labels[rows], batch.doc_ids[rows])

    def model_inputs(self, b: Batch, parallel: bool = True) -> tuple[dict, torch.Tensor]:
        """The model's keyword arguments for a batch and the labels this rank scores. Under context
        parallelism a rank feeds its two sequence chunks with their global positions and a K/V-gathering
        attention kernel."""
        tokens, labels, doc_ids = (t.to(self.device) for t in (b.tokens, b.labels, b.doc_ids))
        cp = self.par.dims.cp if parallel else 1
        if cp == 1:
            return {"tokens": tokens, "doc_ids": doc_ids}, labels
        # The model's CP hook (herd.parallel.cp.apply_cp) adds global positions and K/V-gathering attention.
        idx = chunk_indices(tokens.shape[1], cp, self.par.coordinate("cp"), self.device)
        return {"tokens": tokens[:, idx], "doc_ids": doc_ids}, labels[:, idx]

    def token_loss_sum(self, model: torch.nn.Module, b: Batch, parallel: bool = True) -> torch.Tensor:
        kwargs, labels = self.model_inputs(b, parallel)
        with autocast(self.device, self.dtype):
            logits = model(**kwargs)
        return self.token_loss(logits, labels)

    def _pipeline_step(self, b: Batch, loss_scale: float, train: bool = True) -> float:
        """All micro-batches through the pipeline; the summed losses, known on the last stage, go to all."""
        self._loss_scale = loss_scale
        inputs, labels = self.model_inputs(b)
        losses = self.pipeline.run(inputs["tokens"], inputs["doc_ids"], labels, train=train)
        return self.par.sum(sum(x.item() for x in losses), "pp")

    def loss(self, batch: Batch, n_labels: int) -> torch.Tensor:
        """Sum of token losses / n_labels: micro-batches of one step add up to the step's mean loss."""
        return self.token_loss_sum(self.model, batch) / max(n_labels, 1)

    @torch.no_grad()
    def held_out_loss(self, model: torch.nn.Module | None = None) -> float | None:
        if not self.val_batches:
            return None
        plain = model is not None  # an unsharded copy (exports, averages): every row here, no reduction
        model = model or self.model
        model.to(self.device)
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for full in self.val_batches:
            b = full if plain else self.local_rows(full)
            if self.pipeline is not None and not plain:
                total += self._pipeline_step(b, 1.0, train=False)
            else:
                with self.par.loss_context() if not plain else contextlib.nullcontext():
                    total += float(self.token_loss_sum(model, b, parallel=not plain))
            count += full.n_labels
        model.train(was_training)
        return (total if plain else self.par.sum(total)) / max(count, 1)

    def current_lr(self) -> float:
        s = self.state
        if s.phase == "anneal":
            return anneal_lr(s.anneal_start_lr, s.tokens - s.anneal_start_tokens, self.cfg.anneal.tokens)
        return self.lr_schedule(s.step)

    def batch_shape(self) -> RampStage:
        """(batch tokens, sequence length) now: the ramp, or the current long-context stage's."""
        stage = self.ramp.at(self.state.tokens)
        if self.state.phase == "long":
            lc = self.cfg.long_context[self.state.long_stage]
            batch = lc.batch_tokens or max(1, round(stage.batch_tokens / lc.seq_len)) * lc.seq_len
            return RampStage(self.state.long_start_tokens, batch, lc.seq_len)
        return stage

    def train_step(self) -> dict:
        stage, phase = self.batch_shape(), self.state.phase
        n_seqs = stage.batch_tokens // stage.seq_len
        mbs = self.cfg.ramp.micro_batch_size
        full = self.loader.next_batch(n_seqs, stage.seq_len)
        n_labels = full.n_labels
        mine = self.local_rows(full)
        n_local = mine.tokens.shape[0]
        batches = [
            Batch(*(t[i : i + mbs] for t in (mine.tokens, mine.labels, mine.doc_ids))) for i in range(0, n_local, mbs)
        ]
        # FSDP averages gradients over its ranks; scaling by their count turns the mean into the sum
        # of every rank's share of sum(token losses) / n_labels: the single-process gradient.
        scale = self.par.dims.dp * self.par.dims.cp
        if self.pipeline is not None:
            loss = self._pipeline_step(mine, scale / max(n_labels, 1)) / scale
        else:
            loss = 0.0
            for b in batches:
                with self.par.loss_context():  # the loss and its backward, on vocabulary-sharded logits under TP
                    micro = self.loss(b, n_labels)
                    (micro * scale).backward()  # grads accumulate in the fp32 parameters' .grad
                loss += micro.item()
        loss = self.par.sum(loss)
        lr = self.current_lr()
        reason = self._guard(loss)
        grad_norm = float("nan")
        if reason is None:
            counted_elsewhere = self.pipeline.duplicate_weights() if self.pipeline is not None else []
            grad_norm = clip_grad_norm(
                self.model.parameters(), self.cfg.optim.grad_clip, self.par.group("pp"), counted_elsewhere
            )
            reason = None if math.isfinite(grad_norm) else "nonfinite_grad"
        if reason is None:
            for g in self.optim.param_groups:
                g["lr"] = lr
            self.optim.step()
            self._accept(loss, stage.batch_tokens)
        else:
            self._skip(reason, loss)
        self.optim.zero_grad(set_to_none=True)
        return {"loss": loss, "lr": lr, "grad_norm": grad_norm, "seq_len": stage.seq_len,
                "batch_tokens": stage.batch_tokens, "skipped": reason, "phase": phase}  # fmt: skip

    def _guard(self, loss: float) -> str | None:
        if not math.isfinite(loss):
            return "nonfinite_loss"
        g, s = self.cfg.guard, self.state
        if s.ema_steps >= g.warmup_steps and loss > g.spike_factor * s.loss_ema:
            return "loss_spike"
        return None

    def _accept(self, loss: float, batch_tokens: int) -> None:
        s, g = self.state, self.cfg.guard
        s.loss_ema = loss if s.ema_steps == 0 else g.ema * s.loss_ema + (1 - g.ema) * loss
        s.ema_steps += 1
        s.step += 1
        s.tokens += batch_tokens
        s.consecutive_skips = 0

    def _skip(self, reason: str, loss: float) -> None:
        s = self.state
        s.skipped += 1
        s.consecutive_skips += 1
        log.warning("step %d: skipped update (%s, loss %.4g); %d in a row", s.step, reason, loss, s.consecutive_skips)
        if s.consecutive_skips >= self.cfg.guard.max_skips:
            self._rollback()

    def _rollback(self) -> None:
        """Back to the last checkpoint's weights and optimizer; the loader keeps going past the bad data."""
        loader_state = self.loader.state_dict()
        skipped, rollbacks = self.state.skipped, self.state.rollbacks
        train_state = self.ckpt.load_latest(self.model, self.optim)
        if train_state is None:
            raise RuntimeError(f"{self.cfg.guard.max_skips} skipped updates in a row and no checkpoint to roll back to")
        self.state = TrainState(**train_state["state"])
        self.state.skipped, self.state.rollbacks = skipped, rollbacks + 1
        self.loader.load_state_dict(loader_state)
        log.warning("rolled back to step %d after %d skipped updates", self.state.step, self.cfg.guard.max_skips)

    # ------------------------------------------------------------------------------------------------
    def save(self) -> None:
        rng = {"torch": torch.get_rng_state().tolist()}
        self.ckpt.save(
            self.state.step,
            self.model,
            self.optim,
            {"state": dataclasses.asdict(self.state), "loader": self.loader.state_dict(), "rng": rng},
        )

    def resume(self) -> bool:
        train_state = self.ckpt.load_latest(self.model, self.optim)
        if train_state is None:
            return False
        self.state = TrainState(**train_state["state"])
        if self.state.long_stage >= 0:
            self._apply_long_rope(self.state.long_stage)
        if self.state.phase in ("anneal", "done") and self.cfg.anneal.tokens:
            self.loader.mix = self._anneal_mix()
        self.loader.load_state_dict(train_state["loader"])
        if self.state.phase == "done" and self.state.long_stage < 0 and not self.state.anneal_snapshots:
            # A finished run resumed with a larger budget (schedule.max_steps / tokens) continues.
            self.state.phase = "main" if not self._main_done() else "done"
        torch.set_rng_state(torch.tensor(train_state["rng"]["torch"], dtype=torch.uint8))
        return True

    def _anneal_mix(self) -> MixSchedule:
        if not self.cfg.anneal.mix:
            return self.main_mix
        stages = (
            *self.main_mix.stages,
            type(self.main_mix.stages[0])(self.state.anneal_start_tokens, self.cfg.anneal.mix),
        )
        return MixSchedule(stages)

    def _main_done(self) -> bool:
        s, c = self.state, self.cfg.schedule
        return (c.max_steps and s.step >= c.max_steps) or (c.tokens and s.tokens >= c.tokens)

    def _advance_phase(self) -> None:
        s = self.state
        if s.phase == "main" and self._main_done():
            self._begin_after(0)
        elif s.phase == "long" and self._long_stage_done():
            self._begin_after(s.long_stage + 1)
        elif s.phase == "anneal" and s.tokens - s.anneal_start_tokens >= self.cfg.anneal.tokens:
            s.phase = "done"

    def _begin_after(self, next_long: int) -> None:
        """Main pretraining → long-context stages → annealing → done [P §3.4]."""
        s = self.state
        if next_long < len(self.cfg.long_context):
            s.phase, s.long_stage, s.long_start_tokens = "long", next_long, s.tokens
            s.long_baseline = self.held_out_loss() or 0.0
            self._apply_long_rope(next_long)
            log.info("long-context stage %d: seq %d from step %d", next_long, self.cfg.long_context[next_long].seq_len,
                     s.step)  # fmt: skip
        elif self.cfg.anneal.tokens > 0:
            s.phase, s.anneal_start_tokens, s.anneal_start_lr = "anneal", s.tokens, self.lr_schedule(s.step)
            self.loader.mix = self._anneal_mix()
            log.info("annealing from step %d: LR %.3g → 0 over %d tokens", s.step, s.anneal_start_lr,
                     self.cfg.anneal.tokens)  # fmt: skip
        else:
            s.phase = "done"

    def _apply_long_rope(self, upto: int) -> None:
        """RoPE θ and 3.1 scaling as configured by long-context stages 0..upto (later stages win)."""
        cfg = self.model.cfg
        for lc in self.cfg.long_context[: upto + 1]:
            scaling = cfg.rope_scaling
            if lc.rope_scaling_factor:
                scaling = RopeScaling(factor=lc.rope_scaling_factor, original_max_seq_len=self.ramp.stages[-1].seq_len)
            cfg = dataclasses.replace(
                cfg, rope_theta=lc.rope_theta or cfg.rope_theta, rope_scaling=scaling,
                max_seq_len=max(cfg.max_seq_len, lc.seq_len),
            )  # fmt: skip
        self.model.cfg = self.model_cfg = cfg
        self.model.init_buffers()

    def _long_stage_done(self) -> bool:
        s = self.state
        lc = self.cfg.long_context[s.long_stage]
        seen, cap = s.tokens - s.long_start_tokens, lc.max_tokens or 2 * lc.tokens
        every = self.cfg.eval.every or 1
        if seen < lc.tokens or (seen < cap and s.step % every):
            return False
        loss = self.held_out_loss()
        recovered = loss is None or loss <= s.long_baseline * (1 + lc.loss_tolerance)
        needle = self.needle(lc.seq_len) if lc.needle else None
        passed = recovered and (needle is None or needle.passed)
        if not passed and seen < cap:
            return False
        result = {"stage": s.long_stage, "seq_len": lc.seq_len, "start": s.long_start_tokens, "tokens": seen,
                  "passed": passed, "short_loss": loss, "baseline": s.long_baseline,
                  "needle": needle and needle.found}  # fmt: skip
        s.long_results.append(result)
        (log.info if passed else log.warning)("long-context stage %d ended: %s", s.long_stage, result)
        return True

    def needle(self, length: int) -> NeedleResult | None:
        from herd.eval.needle import haystack_tokens, needle_probe

        tok = self._tokenizer()
        if tok is None or not self.val_batches:
            return None
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
            plain = build_from_state_dict(self.model_cfg, state, "needle probe").to(self.device)
            result = needle_probe(plain, tok, hay, length, seed=self.state.step)
        return self.par.broadcast(result)

    def _maybe_snapshot(self) -> None:
        """Keep evenly spaced annealing weights for the Polyak average (safetensors, model only)."""
        s, a = self.state, self.cfg.anneal
        if not a.tokens or s.phase in ("main", "long"):
            return
        k = len(s.anneal_snapshots)
        if k < a.checkpoints and s.tokens - s.anneal_start_tokens >= (k + 1) * a.tokens / a.checkpoints:
            from safetensors.torch import save_file

            state = self.full_state()  # collective under FSDP/TP: every rank takes part
            if self.par.is_main:
                folder = self.run_dir / "anneal"
                folder.mkdir(exist_ok=True)
                save_file(state, str(folder / f"step-{s.step:08d}.safetensors"))
            s.anneal_snapshots.append(s.step)

    def full_state(self) -> dict[str, torch.Tensor]:
        """Unsharded CPU weights under herd's names (on rank 0; other ranks get an empty dict)."""
        if self.par.mesh is None:
            return {n: t.detach().cpu().contiguous() for n, t in self.model.state_dict().items()}
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        if self.pipeline is None:
            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            return {n: t.contiguous() for n, t in get_model_state_dict(self.model, options=options).items()}
        # Each pipeline stage gathers its own part, then rank 0 collects the parts.
        options = StateDictOptions(full_state_dict=True)
        part = {n: t.detach().cpu().contiguous() for n, t in get_model_state_dict(self.model, options=options).items()}
        merged: dict[str, torch.Tensor] = {}
        for p in self.par.gather_to_main(part):
            merged.update(p)
        return merged

    # ------------------------------------------------------------------------------------------------
    def fit(self) -> dict:
        self._start = time.perf_counter()
        resumed = self.resume()
        cfg = self.cfg
        total = cfg.schedule.max_steps or None
        with progress() as bar:
            task = bar.add_task("pretrain", total=total, completed=self.state.step)
            t_last, tok_last = time.perf_counter(), self.state.tokens
            while self.state.phase != "done":
                out = self.train_step()
                self._advance_phase()
                self._maybe_snapshot()
                step = self.state.step
                if out["skipped"] is None and step % cfg.runtime.log_every == 0:
                    now = time.perf_counter()
                    self._log_train(out, (self.state.tokens - tok_last) / max(now - t_last, 1e-9))
                    t_last, tok_last = now, self.state.tokens
                    bar.update(task, completed=step, description=f"pretrain loss {out['loss']:.3f}")
                if out["skipped"] is None and cfg.eval.every and step % cfg.eval.every == 0:
                    self._log_val()
                if out["skipped"] is None and cfg.checkpoint.every and step % cfg.checkpoint.every == 0:
                    self.save()
        return self.finish(resumed)

    def _log_train(self, out: dict, tokens_per_s: float) -> None:
        s = self.state
        record = {"kind": "train", "step": s.step, "tokens": s.tokens, "tokens_per_s": tokens_per_s}
        record.update({k: out[k] for k in ("phase", "loss", "lr", "grad_norm", "seq_len", "batch_tokens")})
        record["mfu"] = tokens_per_s * flops_per_token(self.model_cfg, out["seq_len"]) / self.peak_flops
        record["memory_bytes"] = memory_bytes(self.device)
        record["skipped_total"] = s.skipped
        self.metrics.log(record)

    def _log_val(self) -> float | None:
        val = self.held_out_loss()
        if val is not None:
            self.metrics.log({"kind": "val", "step": self.state.step, "tokens": self.state.tokens, "loss": val})
        return val

    def finish(self, resumed: bool) -> dict:
        """Final checkpoint, HF exports (last weights and the annealing average), summary and plot."""
        self.save()
        final_loss = self._log_val()
        state = self.full_state()
        if not self.par.is_main:
            self.par.barrier()
            return {}
        save_hf(build_from_state_dict(self.model_cfg, state, "final weights"), self.run_dir / "final")
        summary = {
            "steps": self.state.step,
            "tokens": self.state.tokens,
            "skipped": self.state.skipped,
            "rollbacks": self.state.rollbacks,
            "resumed": resumed,
            "held_out_loss_last": final_loss,
            "unigram_entropy": unigram_entropy(self.sources),
            "long_context": self.state.long_results,
        }
        base = self.run_dir / "base"
        if self.state.anneal_snapshots:
            averaged = self.average_snapshots()
            summary["held_out_loss_averaged"] = self.held_out_loss(averaged)
            snapshots = [self.held_out_loss(self.snapshot_model(i)) for i in range(len(self.state.anneal_snapshots))]
            summary["held_out_loss_snapshots"] = snapshots
            summary["held_out_loss_last_snapshot"] = snapshots[-1]
            summary["averaged_snapshots"] = self.state.anneal_snapshots
            save_hf(averaged, base)
        else:
            shutil.copytree(self.run_dir / "final", base, dirs_exist_ok=True)
        self._copy_tokenizer([self.run_dir / "final", base])
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        boundaries = {"anneal": self.state.anneal_start_tokens} if self.state.anneal_snapshots else {}
        boundaries.update({f"long {r['seq_len']}": r["start"] for r in self.state.long_results if "start" in r})
        boundaries.update({f"seq {s.seq_len}": s.after_tokens for s in self.ramp.stages[1:]})
        plot_run(self.run_dir, boundaries)
        self.metrics.close()
        # Like every stage: inputs (the token shards, with their own manifest's hash: lineage), the resolved
        # config, counts and outputs. Reruns resume from checkpoints rather than skip by manifest.
        # The summary and the curves are the stage's record: the run report renders them, never recomputes.
        counts = summary | curve_record(self.run_dir / "metrics.jsonl")
        Manifest.write(
            self.run_dir, "pretrain", [self.cfg.data.shards], self.cfg, counts, time.perf_counter() - self._start
        )
        self.par.barrier()
        return summary

    def _snapshot(self, step: int) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(str(self.run_dir / "anneal" / f"step-{step:08d}.safetensors"))

    def snapshot_model(self, index: int) -> Transformer:
        return build_from_state_dict(self.model_cfg, self._snapshot(self.state.anneal_snapshots[index]), "snapshot")

    def average_snapshots(self) -> Transformer:
        """The Polyak average of the annealing snapshots: the base model [P §3.4.3]."""
        states = [self._snapshot(s) for s in self.state.anneal_snapshots]
        return build_from_state_dict(self.model_cfg, average_state_dicts(states), "averaged snapshots")

    def _tokenizer_file(self) -> Path | None:
        """The tokenizer the shards were made with, from the tokenize stage's manifest."""
        manifest = Path(self.cfg.data.shards) / "MANIFEST.json"
        name = json.loads(manifest.read_text()).get("config", {}).get("tokenizer") if manifest.is_file() else None
        if not name:
            return None
        from herd.tokenizer.load import llama3_path

        src = llama3_path() if name == "llama3" else Path(name)
        src = src / "tokenizer.model" if src.is_dir() else src
        return src if src.is_file() else None

    def _tokenizer(self) -> TokenizerLike | None:
        from herd.tokenizer import load_tokenizer

        path = self._tokenizer_file()
        return load_tokenizer(path) if path else None

    def _copy_tokenizer(self, exports: list[Path]) -> None:
        """Put the tokenizer beside the weights, so `herd generate DIR` works."""
        src = self._tokenizer_file()
        if src is not None:
            for d in exports:
                shutil.copyfile(src, d / "tokenizer.model")


def summed_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Σ cross-entropy over the labelled tokens, computed in fp32 whatever the logits' dtype."""
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")


def unigram_entropy(sources: dict[str, list[Path]]) -> float:
    """Entropy (nats/token) of the training tokens' unigram distribution: the loss of a model that
    learned token frequencies and nothing else."""
    shards = [TokenShard(p) for paths in sources.values() for p in paths]
    counts = np.zeros(max(s.vocab_size for s in shards), dtype=np.int64)
    for shard in shards:
        counts += np.bincount(np.asarray(shard.tokens, dtype=np.int64), minlength=len(counts))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def pretrain(cfg: PretrainConfig) -> dict:
    return Trainer(cfg).fit()
