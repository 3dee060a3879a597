"""The training loop of ``lm/train.py``: Accelerate (DDP, mixed precision, accumulation) plus trackers.

Follows transformers' ``run_clm_no_trainer.py`` with its known bugs fixed (see HOUSE-STYLE.md):
optimizer steps are counted and checkpoints saved on ``accelerator.sync_gradients`` only; the "resume
latest" branch is real and tested; evaluation weights every token equally (:mod:`ecg2llm.lm.evaluation`); the
learning rate is a pure function of the step (no prepared scheduler, which Accelerate would step once per
process); the data position is a pure function of the step (:mod:`ecg2llm.lm.data`).
"""
from __future__ import annotations

import gc
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ecg2llm.core.errors import ConfigError
from ecg2llm.core.io import atomic_path, ensure_writable_dir, write_json, write_run_info
from ecg2llm.tokenizer import training_data

from . import checkpoints as ck
from .baselines import baseline_metrics, fit_baselines
from .data import LatticeNoise, TrainBatches, open_or_build_store, tile_crops, with_bos
from .evaluation import eval_loader, evaluate, with_rates
from .model import TOKENIZER_SUBDIR, build_model, num_parameters, tokenizer_record
from .tracking import JsonlLog, flat_config, log_figure, prepare_tracker_env, wandb_init_kwargs


def weighted_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy with a weight per target token: ``sum(w ce) / sum(w)`` over targets that are not
    ``-100`` (with every weight 1 this is the model's own mean loss)."""
    tgt, w = labels[:, 1:], weights[:, 1:].to(logits.dtype)
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tgt.flatten(), ignore_index=-100,
                                           reduction="none").view_as(tgt)
    w = w * (tgt != -100)
    return (ce * w).sum() / w.sum().clamp(min=1e-9)


def anchor_kl(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor, skip_rows=None) -> torch.Tensor:
    """Mean over next-token targets (``labels`` not ``-100``) of KL(p_ref || p), where ``p_ref`` is a frozen
    reference model's prediction and ``p`` the model's; rows marked ``True`` in ``skip_rows`` are left out.

    Added to a fine-tune's loss (``anchor_weight``), it keeps the whole next-token distribution near the starting
    model's, not only the probability of the token the data happens to hold."""
    lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    lq = torch.log_softmax(ref_logits[:, :-1].float(), dim=-1)
    kl = (lq.exp() * (lq - lp)).sum(-1)  # (B, L - 1)
    keep = labels[:, 1:] != -100
    if skip_rows is not None:
        keep = keep & ~torch.as_tensor(np.asarray(skip_rows, bool), device=keep.device)[:, None]
    return (kl * keep).sum() / keep.sum().clamp(min=1)


def make_accelerator(cfg):
    """``Accelerator`` with rotating checkpoints under ``output_dir`` and the configured tracker."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    mp = cfg.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    log_with = prepare_tracker_env(cfg.report_to, cfg.output_dir)
    project = ProjectConfiguration(project_dir=str(cfg.output_dir), logging_dir=str(Path(cfg.output_dir) / "logs"),
                                   automatic_checkpoint_naming=True, total_limit=cfg.save_total_limit or None)
    # cpu=True without CUDA: Accelerate then treats torchrun's WORLD_SIZE > 1 as multi-CPU DDP (gloo);
    # with cpu=False it would silently run each process alone.
    return Accelerator(gradient_accumulation_steps=cfg.gradient_accumulation_steps, mixed_precision=mp,
                       log_with=log_with, project_config=project, cpu=not torch.cuda.is_available())


def _check_fsdp(cfg, acc) -> None:
    """With FSDP the parameters are sharded: main-process-only sampling (figures) would wait forever for
    the other shards, and ``keep_best`` reloads full tensors into sharded ones. Refuse / switch off."""
    from accelerate.utils import DistributedType

    if acc.distributed_type != DistributedType.FSDP:
        return
    if cfg.keep_best:
        raise ConfigError("keep_best is not supported with FSDP (it reloads the best weights into sharded "
                          "parameters): pass --keep_best false, and pick a checkpoint by its validation loss")
    if cfg.figure_samples > 0:
        acc.print("FSDP: figures of generated ECGs need the whole model on one process; figure_samples set to 0")
        cfg.figure_samples = 0


def _set_threads(cfg, accelerator) -> None:
    if accelerator.device.type != "cpu":
        return
    n = cfg.num_threads or max(1, (os.cpu_count() or 1) // accelerator.num_processes)
    torch.set_num_threads(n)


def _optimizer(model, cfg):
    """AdamW; weight decay on matrices only (nanoGPT): not on norms' gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = torch.cuda.is_available()
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), fused=fused or None)


def _load_tokenizer(cfg):
    from ecg2llm.core.hub import shipped_name
    from ecg2llm.tokenizer.base import PRETRAINED_DIR, ECGTokenizer

    tok = ECGTokenizer.from_pretrained(cfg.tokenizer)
    rec = tokenizer_record(tok)
    # the folder a shipped name stands for ("default" -> "v3"), so the record stays right when the default moves
    rec["source"] = shipped_name(cfg.tokenizer, PRETRAINED_DIR) if not Path(str(cfg.tokenizer)).exists() \
        else str(cfg.tokenizer)
    return tok, rec


class Trainer:
    """One training run: ``Trainer(cfg).run()`` returns the path of ``<output_dir>/final``."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        from accelerate.utils import set_seed

        cfg = self.cfg
        ensure_writable_dir(self.out)
        resume = ck.resolve_resume(cfg)
        self.acc = acc = make_accelerator(cfg)
        _set_threads(cfg, acc)
        _check_fsdp(cfg, acc)
        if resume is None:
            ck.check_fresh_output_dir(cfg, acc.is_main_process)
        acc.wait_for_everyone()
        self.resume = resume
        self.log = JsonlLog(self.out / "train_log.jsonl", acc.is_main_process)

        self.spec = self.beat = None
        if cfg.beat_stream:  # LM v3: beats of a beat tokenizer (lm/beatstream.py, lm/beat_train.py)
            from . import beat_train
            from .beatstream import open_beat_corpus
            from .model import special_ids

            beat_train.check_config(cfg)
            self.tok = beat_train.load_beat_tokenizer(cfg.tokenizer)
            with acc.main_process_first():
                from .beat_layout import BeatLayout

                pad = special_ids(BeatLayout.from_tokenizer(self.tok).codebook_size)["pad_token_id"]
                source, self.spec, self.beat = open_beat_corpus(cfg, self.tok, pad)
            self.store = source
            self.tok_rec = beat_train.tokenizer_record(self.tok, source, str(cfg.tokenizer))
        elif cfg.sources:  # LM v2: several stores, every lead, source/lead prefixes (lm/mixture.py)
            from .mixture import open_corpus

            self.tok, self.tok_rec = _load_tokenizer(cfg)
            with acc.main_process_first():
                self.store, source, self.spec = open_corpus(cfg, self.tok)
        else:
            self.tok, self.tok_rec = _load_tokenizer(cfg)
            self.store = open_or_build_store(cfg, self.tok, acc)
            source = self.store
        if cfg.conditioning and not cfg.sources and not cfg.beat_stream:
            from .conditioning import ConditionedCorpus, ConditionSpec

            self.spec = ConditionSpec(first_id=int(self.tok.vocab_size) + 3, lead_s=float(cfg.condition_lead_s))
            source = ConditionedCorpus(self.store, self.spec, cfg.data_dir, self.tok.fs,
                                       self.tok.samples_per_token, lead=cfg.leads[0])
            self.spec.counts = source.counts("train")
        self.source = source
        set_seed(cfg.seed)  # identical initial weights on every process
        model = build_model(cfg, self.tok_rec, self.spec)
        if self.beat is not None:
            beat_train.mark_model(model, self.beat, self.spec, cfg.unconditional_rhythm)
        if cfg.init_from:
            from .finetune import init_from_pretrained

            init_from_pretrained(model, cfg.init_from)
            acc.print(f"initialized from {cfg.init_from}")
        self.anchor = None
        if cfg.anchor_weight > 0:  # a frozen copy of the starting weights (config checks: init_from is set)
            import copy

            self.anchor = copy.deepcopy(model).eval().requires_grad_(False).to(acc.device)
        self.n_params = num_parameters(model)
        self.n_params_nonemb = num_parameters(model, exclude_embeddings=True)
        self.bos = int(model.config.bos_token_id)
        self.batches = TrainBatches(source, cfg.context_length, cfg.batch_size, self.bos, cfg.seed)
        self.noise = None
        if cfg.input_noise > 0:
            levels = getattr(getattr(self.tok, "config", None), "levels", None)
            if not levels:
                raise ConfigError(f"input_noise {cfg.input_noise} moves codes to FSQ lattice neighbours, but "
                                  f"tokenizer {cfg.tokenizer!r} is not an FSQ tokenizer (no `levels`); set "
                                  "input_noise: 0 or train on an FSQ tokenizer (fsq, fsq2)")
            self.noise = LatticeNoise(levels, cfg.input_noise, cfg.seed)

        n = cfg.context_length - 1
        tiles = source.tiles if self.spec is not None else (lambda split, *a: tile_crops(self.store, split, *a))
        self.val_periodic = tiles("valid", n, cfg.eval_crops or 1)
        self.val_final = tiles("valid", n, cfg.final_eval_crops)
        has_test = bool(self.store.entries("test"))
        self.test_final = tiles("test", n, cfg.final_eval_crops) if has_test else None
        loaders = [eval_loader(with_bos(c, self.bos), cfg.eval_batch_size)
                   for c in (self.val_periodic, self.val_final, self.test_final) if c is not None]

        optimizer = _optimizer(model, cfg)
        self.model, self.optimizer, *loaders = acc.prepare(model, optimizer, *loaders)
        self.loader_val, self.loader_val_final = loaders[0], loaders[1]
        self.loader_test = loaders[2] if has_test else None
        self.state = ck.TrainState()  # saved as JSON in trainer_state.json, not pickled by Accelerate
        if resume is not None:
            ck.check_checkpoint_files(resume)
            acc.load_state(str(resume))
            ck.read_train_state(resume, self.state)
            self.log.truncate_after(self.state.step)
            acc.print(f"resumed from {resume} at step {self.state.step}")

        # n-gram baselines: cheap counts, on the main process only; every process needs none of it.
        self.baselines = None
        if acc.is_main_process:
            if self.spec is not None:  # the baselines see the same control tokens as the LM
                train_seqs = source.sequences("train")
                vocab = self.spec.first_id + self.spec.n_tokens
            else:
                train_seqs = [np.asarray(self.store.tokens_of(e), dtype=np.int64) for e in self.store.entries("train")]
                vocab = self.store.vocab_size
            self.baselines = fit_baselines(train_seqs, vocab, self.val_final)
        tps = self.tok_rec["tokens_per_second"]
        if self.spec is not None and self.beat is None:  # control tokens add to the tokens per ECG-second
            seqs = source.sequences("train")
            n_all = sum(len(q) for q in seqs)
            n_codes = sum(int((q < self.spec.first_id).sum()) for q in seqs)
            self.tok_rec = {**self.tok_rec, "stream_tokens_per_second": tps * n_all / max(n_codes, 1)}
        self.run_config = {**asdict(cfg), "n_params": self.n_params, "n_params_non_embedding": self.n_params_nonemb,
                           "num_processes": acc.num_processes, "mixed_precision_resolved": acc.mixed_precision,
                           "tokens_per_ecg_second": tps, "codebook_size": self.tok_rec["codebook_size"],
                           "conditioning": self.spec.to_dict() if self.spec is not None else None}
        if acc.is_main_process:
            write_run_info(self.out, self.run_config,
                           tokenizer=self.tok.describe() if hasattr(self.tok, "describe") else self.tok_rec,
                           device=str(acc.device), resumed_from=str(resume) if resume else None)
        if cfg.report_to != "none":
            acc.init_trackers(cfg.wandb_project, config=flat_config(self.run_config),
                              init_kwargs={"wandb": wandb_init_kwargs(cfg, self.out)})

    # ------------------------------------------------------------------ pieces
    def _eval_and_log(self, step: int, final: bool = False) -> dict:
        cfg, acc = self.cfg, self.acc
        tps = self.tok_rec.get("stream_tokens_per_second", self.tok_rec["tokens_per_second"])
        splits = {"val": self.loader_val_final if final else self.loader_val}
        if final and self.loader_test is not None:
            splits["test"] = self.loader_test
        res = {name: with_rates(evaluate(self.model, loader, acc), tps) for name, loader in splits.items()}
        record = {f"{s}/{k}": v for s, m in res.items() for k, v in m.items()}
        if self.baselines is not None:
            crops = {"val": self.val_final if final else self.val_periodic, "test": self.test_final}
            for s in res:
                for name, m in baseline_metrics(self.baselines, crops[s], tps).items():
                    record[f"{s}/{name}_bits_per_token"] = m["bits_per_token"]
                    res[s][f"{name}_bits_per_token"] = m["bits_per_token"]
                    res[s][f"{name}_bits_per_second"] = m["bits_per_second"]
                    res[s][f"{name}_k"] = m["k"]
        if not final and cfg.keep_best and res["val"]["loss"] < self.state.best_val:
            self.state.best_val, self.state.best_step = res["val"]["loss"], step
            self._save_model(self.out / "best")
            record["val/best_step"] = step
        acc.log(record, step=step)
        self.log.write({"step": step, **record})
        acc.print(" | ".join([f"step {step}"] + [f"{s} bits/token {m['bits_per_token']:.3f} "
                                                 f"(bigram {m.get('bigram_bits_per_token', float('nan')):.3f})"
                                                 for s, m in res.items()]))
        self._figure(step)
        return res

    def _figure(self, step: int) -> None:
        """Generated 10-s ECGs beside decoded real ones: PNG in the run dir and to the tracker."""
        cfg, acc = self.cfg, self.acc
        if not acc.is_main_process or cfg.figure_samples < 1 or self.tok_rec["needs_state"] or cfg.beat_stream:
            return
        from .plots import comparison_figure
        from .sampling import sample_tokens, tokens_to_mv

        model = acc.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        n_tok = int(round(cfg.figure_seconds * self.tok_rec["tokens_per_second"]))
        if cfg.sources:  # a v2 LM starts with source/lead tokens: its own sampler
            from .guidance import sample_guided
            from .request import GenerateConfig

            req = GenerateConfig(num_samples=cfg.figure_samples, batch_size=cfg.figure_samples, seed=cfg.seed,
                                 condition_strength=0.0, grammar=False)  # the LM as trained
            ids = sample_guided(model, req, n_tok).codes
        else:
            ids = sample_tokens(model, cfg.figure_samples, n_tok, batch_size=cfg.figure_samples, seed=cfg.seed)
        model.train(was_training)
        gen = [tokens_to_mv(self.tok, r) for r in ids]
        real = [tokens_to_mv(self.tok, r) for r in self._real_examples(n_tok, cfg.figure_samples)]
        fig = comparison_figure(gen, real, self.tok.fs, title=f"step {step}")
        (self.out / "figures").mkdir(exist_ok=True)
        fig.savefig(self.out / "figures" / f"samples_step{step:06d}.png", dpi=90)
        log_figure(acc, cfg.report_to, fig, "samples", step)
        import matplotlib.pyplot as plt

        plt.close(fig)

    def _real_examples(self, n_tok: int, k: int) -> list[np.ndarray]:
        """``k`` stretches of ``n_tok`` validation tokens, spread over the validation records."""
        ents = [e for e in self.store.entries("valid", lead="MLII" if self.cfg.sources else None)
                if e.n_tokens >= n_tok]
        out = []
        for i in range(min(k, 4 * len(ents))):
            e = ents[i % len(ents)]
            start = e.start + (e.n_tokens - n_tok) * (1 + i // len(ents)) // 5  # fixed, spread positions
            out.append(np.asarray(self.store.tokens[start:start + n_tok], dtype=np.int64))
        return out

    def _save_checkpoint(self, step: int) -> None:
        acc = self.acc
        target = ck.checkpoint_dir(self.out) / f"checkpoint_{step}"
        if acc.is_main_process and target.exists():  # left by a run we resumed before: replace it
            import shutil

            shutil.rmtree(target)
        acc.wait_for_everyone()
        acc.project_configuration.iteration = step  # checkpoint_<step>, not checkpoint_<save count>
        acc.save_state()
        acc.wait_for_everyone()
        if acc.is_main_process:
            write_json(target / ck.MARKER, {**self.state.state_dict(), "num_processes": acc.num_processes})

    def _save_model(self, folder: Path, metrics: dict | None = None) -> Path:
        """``save_pretrained`` + the tokenizer copy (+ metrics), atomically, by the main process."""
        acc = self.acc
        acc.wait_for_everyone()
        # every process: under FSDP this gathers the sharded parameters (a collective); otherwise it is the
        # unwrapped model's own state dict
        state_dict = acc.get_state_dict(self.model)
        if acc.is_main_process:
            model = acc.unwrap_model(self.model)
            with atomic_path(folder) as tmp:
                model.save_pretrained(str(tmp), is_main_process=True, save_function=acc.save,
                                      state_dict=state_dict)
                self.tok.save_pretrained(tmp / TOKENIZER_SUBDIR)
                if metrics is not None:
                    write_json(tmp / "metrics.json", metrics)
                # what this folder's weights saw (with init_from's): the scorecard's band pool and copy search
                if self.beat is not None:
                    from .beat_train import training_data as beat_training_data

                    training_data.write(tmp, beat_training_data(self.cfg, self.source, stage=str(self.out)))
                    self._carry_detail_head(tmp)
                else:
                    from .corpora import base_record

                    seen = {base_record(e.record) for e in self.store.entries("train")}  # augmented views -> record
                    training_data.write(tmp, training_data.run_spec(
                        self.cfg, getattr(self.source, "cinc_excluded", ()), stage=str(self.out), records=seen))
        acc.wait_for_everyone()
        return folder

    def _carry_detail_head(self, folder: Path) -> None:
        """A fine-tuned LM v3 keeps the detail head of its ``init_from`` (coarse tokens -> detail tokens; it reads
        the tokenizer's codes, not the LM's weights) when both use the same tokenizer; otherwise the folder has
        none until ``python -m ecg2llm.lm.beat_detail --lm <folder>`` trains one, and generation says so."""
        import shutil

        from .beat_detail import SUBDIR
        from .beat_train import load_beat_tokenizer
        from .beatstream import tokenizer_id
        from .model import TOKENIZER_SUBDIR, resolve_model_dir

        src = resolve_model_dir(self.cfg.init_from) if self.cfg.init_from else None  # a name, a run dir or final/
        if src is None or not (src / SUBDIR / "config.json").is_file():
            return
        if tokenizer_id(load_beat_tokenizer(src / TOKENIZER_SUBDIR)) != tokenizer_id(self.tok):
            self.acc.print(f"{src}/{SUBDIR} not carried over: {src} has another tokenizer; train a detail head with "
                           f"python -m ecg2llm.lm.beat_detail --lm {self.out}/final --store {self.cfg.store}")
            return
        shutil.copytree(src / SUBDIR, folder / SUBDIR)

    def _restore_best(self) -> None:
        """Load ``best/`` into the model on every process (DDP replicas stay identical)."""
        from safetensors.torch import load_file

        sd = load_file(str(self.out / "best" / "model.safetensors"))
        missing, unexpected = self.acc.unwrap_model(self.model).load_state_dict(sd, strict=False)
        if unexpected or any("lm_head" not in k for k in missing):  # lm_head is tied to the embeddings
            raise RuntimeError(f"best/ does not match the model: missing {missing}, unexpected {unexpected}")
        self.acc.print(f"keep_best: restored the weights of step {self.state.best_step} "
                       f"(val loss {self.state.best_val:.4f})")

    # ------------------------------------------------------------------ loop
    def run(self) -> Path:
        self.setup()
        cfg, acc, st = self.cfg, self.acc, self.state
        ga, rank = cfg.gradient_accumulation_steps, acc.process_index
        tokens_per_step = cfg.batch_size * cfg.context_length * ga * acc.num_processes
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_steps, initial=st.step, desc="training", unit="step",
                   disable=not (cfg.progress and acc.is_main_process))
        win_loss, win_steps, win_time = torch.zeros((), device=acc.device), 0, 0.0
        win_kl = torch.zeros((), device=acc.device)  # anchor_weight: the KL to the starting model, per step
        train_time, t0, start_step = 0.0, time.perf_counter(), st.step
        self.model.train()
        distill = self.beat is not None and getattr(self.store, "distill_share", 0.0) > 0  # guided crops' rows
        # the loss from the logits (per-token weights, the anchor's KL) rather than the model's own mean loss
        from_logits = distill or self.anchor is not None or (self.beat is not None and cfg.ectopic_weight != 1.0)
        while st.step < cfg.max_steps:
            t_step = time.perf_counter()
            lr = ck.lr_at(st.step, cfg)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            step_loss = torch.zeros((), device=acc.device)
            for micro in range(ga):
                batch, rows = (self.batches.batch(st.step, micro, rank, return_distill=True) if distill
                               else (self.batches.batch(st.step, micro, rank), None))  # (B, L), on the CPU
                x = batch.to(acc.device)
                # input noise is drawn on the CPU copy (numpy), so a GPU batch never makes a round trip
                inp = x if self.noise is None else self.noise(batch, st.step, micro, rank).to(acc.device)
                with acc.accumulate(self.model):
                    labels = x if self.beat is None else x.masked_fill(x == self.tok_rec["codebook_size"], -100)
                    if from_logits:
                        w = (self.store.loss_weights(batch, cfg.ectopic_weight, rows) if self.beat is not None
                             else torch.ones(batch.shape))
                        logits = self.model(input_ids=inp).logits
                        loss = weighted_loss(logits, labels, w.to(acc.device))
                        if self.anchor is not None:
                            with torch.no_grad():
                                ref = self.anchor(input_ids=inp).logits
                            kl = anchor_kl(logits, ref, labels, rows)
                            win_kl += kl.detach().float() / ga
                            loss = loss + cfg.anchor_weight * kl
                    else:
                        loss = self.model(input_ids=inp, labels=labels).loss  # targets: the clean sequence (no PAD)
                    acc.backward(loss)
                    if acc.sync_gradients:
                        grad_norm = acc.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                step_loss += loss.detach().float() / ga
            if not acc.sync_gradients:  # cannot happen with a full accumulation cycle per step
                raise RuntimeError("gradient accumulation out of phase with optimizer steps")
            st.step += 1
            st.tokens_seen += tokens_per_step
            dt = time.perf_counter() - t_step
            win_loss, win_steps = win_loss + step_loss, win_steps + 1
            win_time, train_time = win_time + dt, train_time + dt
            bar.update(1)
            if st.step % max(cfg.log_every, 1) == 0 or st.step == cfg.max_steps:
                mean_loss = float(acc.reduce(win_loss / win_steps, reduction="mean"))
                rec = {"train/loss": mean_loss, "train/bits_per_token": mean_loss / np.log(2), "lr": lr,
                       "grad_norm": float(grad_norm), "perf/tokens_per_s": tokens_per_step * win_steps / win_time,
                       "tokens_seen": st.tokens_seen}
                if self.anchor is not None:
                    rec["train/anchor_kl"] = float(acc.reduce(win_kl / win_steps, reduction="mean"))
                acc.log(rec, step=st.step)
                self.log.write({"step": st.step, **rec})
                bar.set_postfix(loss=f"{mean_loss:.3f}", tok_s=f"{rec['perf/tokens_per_s']:.0f}")
                win_loss, win_kl = torch.zeros((), device=acc.device), torch.zeros((), device=acc.device)
                win_steps, win_time = 0, 0.0
            if cfg.save_every and (st.step % cfg.save_every == 0 or st.step == cfg.max_steps):
                self._save_checkpoint(st.step)
            last = st.step == cfg.max_steps  # keep_best must see the last step too (the final eval is separate)
            if cfg.eval_every and ((st.step % cfg.eval_every == 0 and not last) or (last and cfg.keep_best)):
                self._eval_and_log(st.step)
        bar.close()

        if cfg.keep_best and (self.out / "best" / "model.safetensors").is_file():
            self._restore_best()
        final_metrics = self._eval_and_log(st.step, final=True)
        metrics = {
            **final_metrics, "step": st.step, "tokens_seen": st.tokens_seen,
            "train": {"seconds": train_time, "wall_seconds": time.perf_counter() - t0,
                      "steps": st.step - start_step,
                      "tokens_per_second": (tokens_per_step * (st.step - start_step) / train_time
                                            if train_time else None),
                      "note": "tokens/s of this invocation's steps only (a resumed run counts its own)"},
            "weights_from_step": st.best_step if cfg.keep_best and st.best_step >= 0 else st.step,
            "n_params": self.n_params, "n_params_non_embedding": self.n_params_nonemb,
            "tokenizer": {k: self.tok_rec[k] for k in ("codebook_size", "fs", "samples_per_token",
                                                        "tokens_per_second", "weights_hash")},
            "eval_sequences": {"val": int(len(self.val_final)), "test": int(len(self.test_final))
                               if self.test_final is not None else 0, "tokens_per_sequence": cfg.context_length - 1},
        }
        final = self._save_model(self.out / "final", metrics)
        if acc.is_main_process:
            write_json(self.out / "metrics.json", metrics)
        self._finish()
        return final

    def _finish(self) -> None:
        """Drop the prepared model, optimizer and loaders, collect them, then end the run (trackers, process group).

        Under DDP the model's gradient reducer holds its own reference to the gloo process group: left to the
        interpreter's teardown at exit, gloo's worker threads can abort the process (SIGABRT;
        pytorch/pytorch#179291). Collecting them here, while Python is whole, keeps the order:
        reducer, then process group."""
        self.model = self.optimizer = self.anchor = None
        self.loader_val = self.loader_val_final = self.loader_test = None
        self.acc.free_memory()  # Accelerate's own references to them
        gc.collect()  # the DDP wrapper's reference cycles (hooks) hold the reducer
        self.acc.end_training()
