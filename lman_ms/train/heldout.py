"""Eq. (8) on held-out records: the mean negative log-likelihood per answer token, with exactly the tokenisation and
image handling of training (the trainer's periodic evaluation on ``data.eval_path``, the ablations, the demo)."""
from __future__ import annotations

from mindspore import Tensor

from lman_ms.config import LManConfig
from lman_ms.data.conversation import template_from_config
from lman_ms.data.pipeline import RecordSet, Stage2Source
from lman_ms.data.masking import IGNORE_INDEX


class InOrderSource(Stage2Source):
    """Stage-2 batches over every record of a split, task by task in file order (``batch_size`` per batch),
    with exactly the tokenisation and image handling of training."""

    def __init__(self, cfg, records: RecordSet, llm_tok, clip_tok, batch_size: int):
        super().__init__(cfg, records, llm_tok, clip_tok, num_steps=1, template=template_from_config(cfg))
        self.batches = [(task, ids[i:i + batch_size]) for task, ids in records.by_task.items()
                        for i in range(0, len(ids), batch_size)]

    def __len__(self):
        return len(self.batches)

    def rank_records(self, step: int):
        task, ids = self.batches[step]
        return task, [self.records.records[i] for i in ids]


def heldout_loss(model, cfg: LManConfig, records: RecordSet, llm_tok, clip_tok, batch_size: int = 8) -> float:
    """Eq. (8) on held-out records: the mean negative log-likelihood per answer token (each batch's mean loss
    weighted by its answer-token count)."""
    from lman_ms.models.lman import Stage2LossCell
    source = InOrderSource(cfg, records, llm_tok, clip_tok, batch_size)
    cell = Stage2LossCell(model)
    cell.set_train(False)
    total, tokens = 0.0, 0
    for step in range(len(source)):
        batch = source[step]
        n = int((batch[-1] != IGNORE_INDEX).sum())
        total += float(cell(*[Tensor(x) for x in batch]).asnumpy()) * n
        tokens += n
    return total / max(tokens, 1)
