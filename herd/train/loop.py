"""The pretraining loop [P §3.4]: ramps, schedules, guard, held-out loss, checkpoints, annealing, averaging.

One process today; the parallelism issue applies FSDP/TP/PP/CP to the model from outside (herd.parallel)
and gives the loader its data-parallel rank, without changing this loop's arithmetic.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from herd.core.config import save_resolved
from herd.core.logging import get_logger, progress
from herd.core.runtime import autocast, pick_device, pick_dtype, seed_everything
from herd.data.loader import IGNORE_INDEX, Batch, MixSchedule, TokenLoader, split_sources
from herd.data.shards import TokenShard
from herd.model import Transformer, get_preset
from herd.model.config import ModelConfig, flops_per_token
from herd.model.convert import save_hf
from herd.parallel.activation_checkpoint import apply_activation_checkpointing
from herd.train.averaging import average_state_dicts
from herd.train.checkpoint import Checkpointer
from herd.train.config import PretrainConfig
from herd.train.metrics import MetricsLogger, measure_peak_flops, memory_bytes, plot_run
from herd.train.schedules import anneal_lr

log = get_logger(__name__)


@dataclass
class TrainState:
    """Everything besides model, optimizer and loader that a resumed run needs to continue exactly."""

    step: int = 0
    tokens: int = 0
    phase: str = "main"  # main → anneal → done
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
    return get_preset(m.preset, vocab_size=m.vocab_size or vocab_size, attn_impl=m.attn_impl, **overrides)


class Trainer:
    def __init__(self, cfg: PretrainConfig) -> None:
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_resolved(cfg, self.run_dir)
        seed_everything(cfg.seed)
        self.device = pick_device(cfg.runtime.device)
        self.dtype = pick_dtype(cfg.runtime.dtype, self.device)
        self.sources = split_sources(cfg.data.shards, "train")
        vocab = max(TokenShard(p).vocab_size for paths in self.sources.values() for p in paths)
        self.model_cfg = model_config(cfg, vocab)
        self.model = self._build_model()
        self.optim = torch.optim.AdamW(
            self.model.parameters(),
            lr=cfg.optim.lr,
            betas=cfg.optim.betas,
            eps=cfg.optim.eps,
            weight_decay=cfg.optim.weight_decay,
            foreach=True,
        )
        self.lr_schedule, self.ramp = cfg.lr_schedule(), cfg.ramp_schedule()
        self.main_mix = cfg.mix_schedule(self._token_weights())
        self.loader = TokenLoader(self.sources, self.main_mix, seed=cfg.data.seed)
        self.state = TrainState()
        self.ckpt = Checkpointer(self.run_dir / "checkpoints", cfg.checkpoint.keep, cfg.checkpoint.verify)
        self.metrics = MetricsLogger(self.run_dir, cfg.runtime.tensorboard)
        self.val_batches = self._val_batches()
        self.peak_flops = cfg.runtime.peak_flops or measure_peak_flops(self.device, self.dtype)

    def _build_model(self) -> Transformer:
        with torch.device("meta"):
            model = Transformer(self.model_cfg)
        if self.cfg.runtime.activation_checkpointing:
            apply_activation_checkpointing(model)
        if self.cfg.runtime.compile:
            for block in model.layers.values():
                block.compile()
        model.to_empty(device=self.device)
        model.init_weights(seed=self.cfg.seed)
        return model

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
    def loss(self, batch: Batch, n_labels: int) -> torch.Tensor:
        """Sum of token losses / n_labels: micro-batches of one step add up to the step's mean loss."""
        tokens, labels, doc_ids = (t.to(self.device) for t in (batch.tokens, batch.labels, batch.doc_ids))
        with autocast(self.device, self.dtype):
            logits = self.model(tokens, doc_ids=doc_ids)
        return F.cross_entropy(
            logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        ) / max(n_labels, 1)

    @torch.no_grad()
    def held_out_loss(self, model: torch.nn.Module | None = None) -> float | None:
        if not self.val_batches:
            return None
        model = model or self.model
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for b in self.val_batches:
            with autocast(self.device, self.dtype):
                logits = model(b.tokens.to(self.device), doc_ids=b.doc_ids.to(self.device))
            total += F.cross_entropy(
                logits.float().flatten(0, 1), b.labels.to(self.device).flatten(), ignore_index=IGNORE_INDEX,
                reduction="sum",
            ).item()  # fmt: skip
            count += b.n_labels
        model.train(was_training)
        return total / max(count, 1)

    def current_lr(self) -> float:
        s = self.state
        if s.phase == "anneal":
            return anneal_lr(s.anneal_start_lr, s.tokens - s.anneal_start_tokens, self.cfg.anneal.tokens)
        return self.lr_schedule(s.step)

    def train_step(self) -> dict:
        stage = self.ramp.at(self.state.tokens)
        n_seqs = stage.batch_tokens // stage.seq_len
        mbs = self.cfg.ramp.micro_batch_size
        batches = [self.loader.next_batch(min(mbs, n_seqs - i), stage.seq_len) for i in range(0, n_seqs, mbs)]
        n_labels = sum(b.n_labels for b in batches)
        loss = 0.0
        for b in batches:
            micro = self.loss(b, n_labels)
            micro.backward()  # grads accumulate in the fp32 parameters' .grad
            loss += micro.item()
        lr = self.current_lr()
        reason = self._guard(loss)
        grad_norm = float("nan")
        if reason is None:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip).item()
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
                "batch_tokens": stage.batch_tokens, "skipped": reason}  # fmt: skip

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
        if self.state.phase == "anneal":
            self.loader.mix = self._anneal_mix()
        self.loader.load_state_dict(train_state["loader"])
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
            if self.cfg.anneal.tokens > 0:
                s.phase, s.anneal_start_tokens, s.anneal_start_lr = "anneal", s.tokens, self.lr_schedule(s.step)
                self.loader.mix = self._anneal_mix()
                log.info("annealing from step %d: LR %.3g → 0 over %d tokens", s.step, s.anneal_start_lr,
                         self.cfg.anneal.tokens)  # fmt: skip
            else:
                s.phase = "done"
        elif s.phase == "anneal" and s.tokens - s.anneal_start_tokens >= self.cfg.anneal.tokens:
            s.phase = "done"

    def _maybe_snapshot(self) -> None:
        """Keep evenly spaced annealing weights for the Polyak average (safetensors, model only)."""
        s, a = self.state, self.cfg.anneal
        if not a.tokens or s.phase == "main":
            return
        k = len(s.anneal_snapshots)
        if k < a.checkpoints and s.tokens - s.anneal_start_tokens >= (k + 1) * a.tokens / a.checkpoints:
            from safetensors.torch import save_file

            folder = self.run_dir / "anneal"
            folder.mkdir(exist_ok=True)
            state = {n: t.detach().cpu().contiguous() for n, t in self.model.state_dict().items()}
            save_file(state, str(folder / f"step-{s.step:08d}.safetensors"))
            s.anneal_snapshots.append(s.step)

    # ------------------------------------------------------------------------------------------------
    def fit(self) -> dict:
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
        record = {"kind": "train", "step": s.step, "tokens": s.tokens, "phase": s.phase, "tokens_per_s": tokens_per_s}
        record.update({k: out[k] for k in ("loss", "lr", "grad_norm", "seq_len", "batch_tokens")})
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
        save_hf(self.model, self.run_dir / "final")
        summary = {
            "steps": self.state.step,
            "tokens": self.state.tokens,
            "skipped": self.state.skipped,
            "rollbacks": self.state.rollbacks,
            "resumed": resumed,
            "held_out_loss_last": final_loss,
            "unigram_entropy": unigram_entropy(self.sources),
        }
        base = self.run_dir / "final"
        if self.state.anneal_snapshots:
            averaged = self.average_snapshots()
            summary["held_out_loss_averaged"] = self.held_out_loss(averaged)
            summary["averaged_snapshots"] = self.state.anneal_snapshots
            base = save_hf(averaged, self.run_dir / "base")
        else:
            shutil.copytree(self.run_dir / "final", self.run_dir / "base", dirs_exist_ok=True)
        self._copy_tokenizer([self.run_dir / "final", base])
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        boundaries = {"anneal": self.state.anneal_start_tokens} if self.state.anneal_snapshots else {}
        boundaries.update({f"seq {s.seq_len}": s.after_tokens for s in self.ramp.stages[1:]})
        plot_run(self.run_dir, boundaries)
        self.metrics.close()
        return summary

    def average_snapshots(self) -> Transformer:
        from safetensors.torch import load_file

        states = [
            load_file(str(self.run_dir / "anneal" / f"step-{s:08d}.safetensors")) for s in self.state.anneal_snapshots
        ]
        with torch.device("meta"):
            model = Transformer(self.model_cfg)
        model.load_state_dict(average_state_dicts(states), assign=True)
        model.init_buffers()
        return model.to(self.device)

    def _copy_tokenizer(self, exports: list[Path]) -> None:
        """Put the tokenizer the shards were made with beside the weights, so `herd generate DIR` works."""
        manifest = Path(self.cfg.data.shards) / "MANIFEST.json"
        if not manifest.is_file():
            return
        name = json.loads(manifest.read_text()).get("config", {}).get("tokenizer")
        if not name:
            return
        from herd.tokenizer.load import llama3_path

        src = llama3_path() if name == "llama3" else Path(name)
        src = src / "tokenizer.model" if src.is_dir() else src
        if src.is_file():
            for d in exports:
                shutil.copyfile(src, d / "tokenizer.model")


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
