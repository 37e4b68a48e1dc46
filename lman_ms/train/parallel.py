"""The parallel context, in one place (never inside ``construct``).

Launched by ``msrun`` (scripts/run_distribute_train.sh) each worker calls :func:`init_parallel`, which initialises
the communication backend (HCCL on Ascend, the CPU collective backend on CPU), checks the ``parallel`` section
against the worker count and sets data-parallel gradient averaging. Data parallel is the only layout: the other
keys of the section are refused with the reason (:func:`validate_parallel`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import mindspore as ms

from lman_ms.config import ConfigError, LManConfig


@dataclass
class ParallelInfo:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_distributed() -> bool:
    """True inside an msrun (or rank-table) worker with more than one worker."""
    n = os.environ.get("MS_WORKER_NUM") or os.environ.get("RANK_SIZE")
    return n is not None and int(n) > 1


# Why model/pipeline parallelism is refused rather than passed to MindSpore: SEMI_AUTO_PARALLEL splits only the ops
# that carry a shard strategy (mindformers' ``parallel_config`` gives its LLaMA cells one; the mindcv ViT, the query
# adapter and LoRA have none), and pipeline stages need every cell assigned to a stage plus a PipelineCell with
# micro-batches around the loss. None of that exists here, and none of it can be compiled or checked without Ascend
# (DESIGN.md, "Ascend compile-only checks"): the keys would be accepted and do nothing, or fail deep in graph
# compilation. What fits instead: data parallel + parallel.recompute + LoRA (the 7B stage-2 config: ~0.6 B
# trainables per 64 GB card). The keys stay in the schema under mindformers' names so that a mindformers-style
# config gets this reason, not an "unknown key".
_NOT_SUPPORTED = ("is not supported: the visual path (mindcv ViT, query adapter) and LoRA have no shard strategies and "
                  "nothing here assigns pipeline stages, and neither can be compiled without Ascend; use data_parallel "
                  "with parallel.recompute and LoRA (train.lora.rank) to fit the 7B model")


def validate_parallel(cfg: LManConfig, world: int) -> None:
    """Refuse what this trainer cannot run: a layout that does not match the worker count, or model/pipeline
    parallelism, micro-batches and optimizer sharding (data parallel is the only layout; see above)."""
    p = cfg.parallel
    if p.model_parallel != 1:
        raise ConfigError(f"parallel.model_parallel={p.model_parallel} {_NOT_SUPPORTED}")
    if p.pipeline_stage != 1:
        raise ConfigError(f"parallel.pipeline_stage={p.pipeline_stage} {_NOT_SUPPORTED}")
    if p.micro_batch_num != 1:
        raise ConfigError(f"parallel.micro_batch_num={p.micro_batch_num}: micro-batches belong to pipeline "
                          "parallelism, which is not supported; for a larger effective batch use "
                          "train.gradient_accumulation_steps")
    if p.enable_parallel_optimizer:
        # MindSpore shards the optimizer in DATA_PARALLEL mode for its own Lamb/AdamWeightDecay on Ascend only; the
        # trainer's FusedAdamW (train/adamw.py) is neither, so the flag would be silently ignored.
        raise ConfigError("parallel.enable_parallel_optimizer=true is not supported: MindSpore shards optimizer state "
                          "in data-parallel mode only for its own Lamb/AdamWeightDecay on Ascend, not for this "
                          "trainer's AdamW; the 7B configs fit without it (LoRA keeps the AdamW moments small)")
    if p.data_parallel != world:
        raise ConfigError(f"parallel.data_parallel={p.data_parallel}, but {world} worker(s) are running "
                          "(msrun --worker_num must equal it)")


def init_parallel(cfg: LManConfig) -> ParallelInfo:
    ms.set_context(mode=getattr(ms, cfg.context.mode), device_target=cfg.context.device_target)
    if cfg.context.device_target.upper() == "ASCEND":
        ms.set_context(jit_config={"jit_level": cfg.context.jit_level})
        if cfg.context.max_device_memory:
            ms.set_context(max_device_memory=cfg.context.max_device_memory)
    if not launched_distributed():
        validate_parallel(cfg, 1)
        return ParallelInfo()
    from mindspore.communication import get_group_size, get_rank, init
    init()
    info = ParallelInfo(get_rank(), get_group_size())
    validate_parallel(cfg, info.world)
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=info.world)
    return info
