"""The training loop behind ``tools/train.py``: both stages, resume, checkpoints, logging, data parallel.

    cfg -> parallel context -> LMan(stage) -> pretrained weights -> freezing -> AdamW + schedule -> TrainStep
        -> batches from step `start` on -> log / checkpoint every N steps -> final checkpoint
"""
from __future__ import annotations

import logging
import os
import time
from typing import Optional

import mindspore as ms
import numpy as np

from lman_ms.config import LManConfig
from lman_ms.data.conversation import template_from_config
from lman_ms.data.pipeline import STAGE1_COLUMNS, STAGE2_COLUMNS, RecordSet, Stage1Source, Stage2Source, make_dataset
from lman_ms.data.tasks import HUMANINS_TASKS as _HUMANINS_TASKS
from lman_ms.data.tokenizers import load_clip_tokenizer, load_llm_tokenizer
from lman_ms.models.lman import LMan, Stage1LossCell, Stage2LossCell
from lman_ms.models.lora import apply_lora_from_config
from lman_ms.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from lman_ms.train.freeze import apply_freezing, format_counts
from lman_ms.train.logger import TrainLogger, setup_logging
from lman_ms.train.optim import build_optimizer
from lman_ms.train.parallel import init_parallel
from lman_ms.train.pretrained import load_pretrained
from lman_ms.train.recompute import apply_recompute
from lman_ms.train.step import TrainStep

logger = logging.getLogger("lman_ms.train")


class Trainer:
    def __init__(self, cfg: LManConfig, resume: Optional[str] = None):
        self.cfg = cfg
        self.par = init_parallel(cfg)
        setup_logging(self.par.is_main)
        t = cfg.train
        ms.set_seed(t.seed)
        np.random.seed(t.seed)
        self.stage = t.stage
        self.output_dir = t.output_dir
        os.makedirs(self.output_dir, exist_ok=True)
        if self.par.is_main:
            logger.info("resolved config:\n%s", cfg.to_yaml())
            if t.log_file:
                fh = logging.FileHandler(os.path.join(self.output_dir, "train.log"))
                fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
                logging.getLogger("lman_ms").addHandler(fh)

        self.model = LMan(cfg, stage=self.stage)
        load_pretrained(self.model, cfg)
        apply_lora_from_config(self.model, cfg)   # after the pretrained load (no LoRA keys there), before freezing
        counts = apply_freezing(self.model, t, cfg.llm.num_hidden_layers)
        apply_recompute(self.model, cfg)           # after LoRA (its new cells must be inside the recomputed blocks)
        logger.info("stage %d parameters:\n%s", self.stage, format_counts(counts))
        if self.stage == 1:
            self.loss_cell, self.columns = Stage1LossCell(self.model), STAGE1_COLUMNS
        else:
            self.loss_cell, self.columns = Stage2LossCell(self.model), STAGE2_COLUMNS
        self.optimizer, self.schedule = build_optimizer(self.model.trainable_params(), t)
        self.step_cell = TrainStep(self.loss_cell, self.optimizer, t.max_grad_norm, has_aux=self.stage == 1,
                                   loss_scale=t.loss_scale, accumulation=t.gradient_accumulation_steps)
        self.accum_cell = self.step_cell.accumulate_cell() if t.gradient_accumulation_steps > 1 else None
        # training mode: the norms train on the CPU LayerNorm kernels (models/layer_norm_kernel.py) and LoRA's dropout
        # (train.lora.dropout) acts; without it the cells stayed in inference mode. Nothing else in the model
        # drops out (the ViT's rates are 0), so with no LoRA dropout the loss is the inference-mode loss.
        for cell in (self.step_cell, self.accum_cell):
            if cell is not None:
                cell.set_train(True)
        self.start_step = 0
        ckpt = latest_checkpoint(resume) if resume else None
        if resume and ckpt is None:
            raise FileNotFoundError(f"--resume {resume}: no complete checkpoint there")
        if ckpt:
            state = load_checkpoint(self.step_cell, ckpt)
            self.start_step = int(state["step"])
            logger.info("resumed from %s at step %d", ckpt, self.start_step)
        self.source = self._build_source()
        self.evaluator = self._build_evaluator() if t.eval_steps > 0 else None

    def _build_source(self):
        cfg, d = self.cfg, self.cfg.data
        clip_tok = load_clip_tokenizer(d.clip_tokenizer_path or d.tokenizer_path)
        if self.stage == 1:
            records = RecordSet.load(d.train_path, "train", d.image_root, tasks=["caption"])
            return Stage1Source(cfg, records, clip_tok, self.par.rank, self.par.world)
        records = RecordSet.load(d.train_path, "train", d.image_root,
                                 tasks=[t for t in _HUMANINS_TASKS])
        return Stage2Source(cfg, records, load_llm_tokenizer(d.tokenizer_path), clip_tok, self.par.rank,
                            self.par.world, template=template_from_config(cfg))

    def _build_evaluator(self):
        from lman_ms.train.heldout_eval import HeldoutEvaluator
        d = self.cfg.data
        clip_tok = load_clip_tokenizer(d.clip_tokenizer_path or d.tokenizer_path)
        if self.stage == 1:
            return HeldoutEvaluator(self.cfg, 1, ["caption"], None, clip_tok, self.par.rank, self.par.world)
        return HeldoutEvaluator(self.cfg, 2, _HUMANINS_TASKS, load_llm_tokenizer(d.tokenizer_path), clip_tok,
                                self.par.rank, self.par.world, template=template_from_config(self.cfg))

    def evaluate(self, step: int, log: TrainLogger) -> dict:
        """Held-out loss at ``step`` (every rank computes its share; rank 0 logs), then back to training mode."""
        result = self.evaluator(self.loss_cell)
        for cell in (self.step_cell, self.accum_cell):
            if cell is not None:
                cell.set_train(True)
        log.eval(step, result)
        return result

    def _state(self, step: int) -> dict:
        return {"stage": self.stage, "data_position": step * self.cfg.train.gradient_accumulation_steps,
                "seed": self.cfg.train.seed, "world": self.par.world, "time": time.time()}

    def save_model_folder(self) -> Optional[str]:
        """Stage 2 ends with ``OUTPUT_DIR/model``: the self-contained model folder every tool and
        ``LManPredictor.from_pretrained`` take (LoRA merged into the weights, tokenizers inside); rank 0 only."""
        if not self.par.is_main or self.stage != 2:
            return None
        from lman_ms.models.loader import save_pretrained
        path = save_pretrained(self.model, self.cfg, os.path.join(self.output_dir, "model"))
        logger.info("model folder %s", path)
        return path

    def save(self, step: int) -> Optional[str]:
        if not self.par.is_main:
            return None
        path = save_checkpoint(self.step_cell, self.output_dir, step, self._state(step), self.cfg.to_yaml(),
                               self.cfg.train.keep_last)
        logger.info("saved checkpoint %s", path)
        return path

    def fit(self) -> dict:
        t = self.cfg.train
        accum = t.gradient_accumulation_steps
        total = t.max_steps
        if self.start_step >= total:
            logger.info("already at step %d of %d: nothing to do", self.start_step, total)
            if not os.path.isfile(os.path.join(self.output_dir, "model", "model.ckpt")):
                self.save_model_folder()      # a run finished before training wrote model folders
            return {"step": self.start_step}
        dataset = make_dataset(self.source, self.columns, self.start_step * accum, self.cfg.data.num_workers)
        log = TrainLogger(self.output_dir, total, self.start_step, self.par.is_main, t.log_steps)
        step, last = self.start_step, {}
        micro = 0
        try:
            for batch in dataset.create_tuple_iterator(num_epochs=1, output_numpy=False):
                micro += 1
                if micro % accum:
                    self.accum_cell(*batch)
                    continue
                out = self.step_cell(*batch)
                step += 1
                last = self._losses(out)
                if not np.isfinite(list(last.values())).all():
                    raise FloatingPointError(f"non-finite loss at step {step}: {last}")
                samples = int(batch[0].shape[0]) * accum * self.par.world
                tokens = self._tokens(batch) * accum * self.par.world
                task = self.source.plan(step * accum - 1)[0]
                log.step(step, last, self.schedule.value(step - 1), samples, tokens, task)
                if self.evaluator is not None and (step % t.eval_steps == 0 or step >= total):
                    self.evaluate(step, log)
                if t.save_steps > 0 and step % t.save_steps == 0 and step < total:
                    self.save(step)
                if step >= total:
                    break
        finally:
            log.close()
        self.save(step)
        self.save_model_folder()
        if self.par.world > 1:
            self._write_replica_digest(step)
        return {"step": step, **last}

    def _write_replica_digest(self, step: int) -> None:
        """Every rank writes a hash of its weights: data-parallel replicas must end bit-identical, and a mismatch
        (a rank that skipped an all-reduce, a non-deterministic kernel) shows up as differing digests."""
        import hashlib
        import json
        h = hashlib.sha256()
        for p in sorted(self.model.get_parameters(), key=lambda q: q.name):
            h.update(p.name.encode())
            h.update(p.asnumpy().tobytes())
        path = os.path.join(self.output_dir, f"replica_rank{self.par.rank}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"rank": self.par.rank, "world": self.par.world, "step": step, "sha256": h.hexdigest()}, f)
        logger.warning("rank %d weights sha256 %s", self.par.rank, h.hexdigest()[:16])

    def _losses(self, out) -> dict:
        if self.stage == 1:
            return {"loss": float(out[0].asnumpy()), "lic": float(out[1].asnumpy()),
                    "vmlm": float(out[2].asnumpy())}
        return {"loss": float(out.asnumpy())}

    def _tokens(self, batch) -> int:
        q = self.cfg.adapter.num_query_tokens * int(batch[0].shape[0])
        if self.stage == 1:
            return int(batch[4].asnumpy().sum()) + q
        return int(batch[5].asnumpy().sum()) + q + int(batch[3].shape[1]) * int(batch[0].shape[0])


def train(cfg: LManConfig, resume: Optional[str] = None) -> dict:
    return Trainer(cfg, resume).fit()
