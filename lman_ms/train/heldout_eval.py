"""The trainer's held-out loss (``train.eval_steps``, ``train.eval_max_batches``, ``data.eval_path``).

:func:`lman_ms.train.heldout.heldout_loss` scores a whole split in one process (demo, ablations); this is the
bounded version the trainer runs every ``eval_steps`` steps: both stages, a fixed subset, data-parallel ranks
sharing the work, and the loss cell compiled once for all evaluations.

The records are ``data.eval_path``'s test split, or its val split when it has no test files (a HumanIns folder
holds ``test-*.jsonl`` for every source and ``val-*.jsonl`` for few; the paper reports test). A JSONL file is
taken whole. Only the stage's tasks count: captions in stage 1, the six HumanIns tasks in stage 2.

Every evaluation runs the same batches, so successive values are comparable: each task's records in file order,
cut into the task's global batch size (``data.tasks``), the tasks interleaved batch by batch so that a bound of
``eval_max_batches`` still covers every task. Each data-parallel rank computes its share of every batch; the sums
are all-reduced, so every rank gets the global figure. Forward only, in inference mode (no LoRA dropout).

Stage 2 reports eq. (8) per answer token over all batches (each batch's mean weighted by its answer-token count).
Stage 1 reports the mean over batches of eq. (7) and its two terms: L_lic is defined per batch (its negatives are
the batch), so it is averaged as batches, at the training batch size.
"""
from __future__ import annotations

import glob
import os
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
from mindspore import Tensor, nn, ops

from lman_ms.config import LManConfig
from lman_ms.data.humanins.errors import AnnotationError
from lman_ms.data.pipeline import RecordSet, Stage1Source, Stage2Source
from lman_ms.data.masking import IGNORE_INDEX

EVAL_SPLITS = ("test", "val")


def eval_split(path: str) -> str:
    """The split of ``path`` the trainer evaluates: test, else val ("" for a JSONL file: all of it)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"data.eval_path {path!r} does not exist")
    if os.path.isfile(path):
        return ""
    for split in EVAL_SPLITS:
        if glob.glob(os.path.join(path, "**", f"{split}-*.jsonl"), recursive=True):
            return split
    raise FileNotFoundError(f"data.eval_path {path!r} holds no test-*.jsonl or val-*.jsonl records")


def load_heldout(cfg: LManConfig, tasks: Sequence[str]) -> Tuple[RecordSet, str]:
    """(records, split name) of ``data.eval_path`` for ``tasks``."""
    path = cfg.data.eval_path
    split = eval_split(path)
    try:
        return RecordSet.load(path, split or None, cfg.data.image_root, tasks=list(tasks)), split or "all"
    except AnnotationError:
        raise                                 # names the file and line already
    except ValueError as e:                   # no records of these tasks
        raise ValueError(f"data.eval_path: {e}") from e


def batch_plan(records: RecordSet, batch_size_of, max_batches: int) -> List[Tuple[str, List[int]]]:
    """(task, record indices) of each global batch: per-task chunks, interleaved across tasks, the first
    ``max_batches``."""
    chunks = {t: [ids[i:i + batch_size_of(t)] for i in range(0, len(ids), batch_size_of(t))]
              for t, ids in records.by_task.items()}
    plan, depth = [], max((len(c) for c in chunks.values()), default=0)
    for i in range(depth):
        plan += [(t, c[i]) for t, c in chunks.items() if i < len(c)]
    return plan[:max_batches]


class _Fixed:
    """Serves the batches of :func:`batch_plan`, this rank's share of each, through a training source's
    ``__getitem__`` (same tokenisation, image handling and stage-1 masking as training)."""

    def set_batches(self, batches: List[Tuple[str, List[int]]]) -> None:
        self.batches = []
        for task, ids in batches:
            share = np.array_split(np.asarray(ids), self.world)[self.rank]
            self.batches.append((task, [int(i) for i in share]))

    def __len__(self):
        return len(self.batches)

    def rank_records(self, step: int):
        task, ids = self.batches[step]
        return task, [self.records.records[i] for i in ids]


class _Stage1Heldout(_Fixed, Stage1Source):
    pass


class _Stage2Heldout(_Fixed, Stage2Source):
    pass


class _SumOverRanks(nn.Cell):
    def __init__(self):
        super().__init__()
        self.all_reduce = ops.AllReduce()

    def construct(self, x):
        return self.all_reduce(x)


class HeldoutEvaluator:
    """Built once by the Trainer; :meth:`__call__` evaluates ``loss_cell`` (Stage1LossCell / Stage2LossCell)."""

    def __init__(self, cfg: LManConfig, stage: int, tasks: Sequence[str], llm_tok, clip_tok, rank: int = 0,
                 world: int = 1, template=None):
        records, self.split = load_heldout(cfg, tasks)
        self.stage = stage
        if stage == 1:
            self.source = _Stage1Heldout(cfg, records, clip_tok, rank, world)
        else:
            self.source = _Stage2Heldout(cfg, records, llm_tok, clip_tok, rank, world, template=template)
        plan = batch_plan(records, lambda t: self.source.task_setting(t).batch_size, cfg.train.eval_max_batches)
        self.source.set_batches(plan)
        self.num_records = sum(len(ids) for _, ids in plan)
        self.reduce = _SumOverRanks() if world > 1 else None

    def __call__(self, loss_cell: nn.Cell) -> Dict[str, Union[float, int, str]]:
        """{"eval_loss", ...} over the held-out batches; leaves ``loss_cell`` in inference mode."""
        loss_cell.set_train(False)
        # stage 1: sums of [loss, lic, vmlm, rank-batches]; stage 2: sums of [loss x answer tokens, answer tokens]
        sums = np.zeros(4 if self.stage == 1 else 2, np.float64)
        for step in range(len(self.source)):
            if not self.source.rank_records(step)[1]:
                continue                      # a last, short batch with fewer records than ranks
            batch = self.source[step]
            out = loss_cell(*[Tensor(x) for x in batch])
            if self.stage == 1:
                sums += [float(out[0].asnumpy()), float(out[1].asnumpy()), float(out[2].asnumpy()), 1.0]
            else:
                n = int((batch[-1] != IGNORE_INDEX).sum())
                sums += [float(out.asnumpy()) * n, n]
        if self.reduce is not None:
            sums = self.reduce(Tensor(sums.astype(np.float32))).asnumpy().astype(np.float64)
        info = {"eval_batches": len(self.source), "eval_records": self.num_records, "eval_split": self.split}
        if self.stage == 1:
            n = max(sums[3], 1.0)
            return {"eval_loss": sums[0] / n, "eval_lic": sums[1] / n, "eval_vmlm": sums[2] / n, **info}
        return {"eval_loss": sums[0] / max(sums[1], 1.0), "eval_tokens": int(round(sums[1])), **info}
