"""The parallel context, in one place (never inside ``construct``).

Launched by ``msrun`` (scripts/run_distribute_train.sh) each worker calls :func:`init_parallel`, which initialises
the communication backend (HCCL on Ascend, the CPU collective backend on CPU), checks the ``parallel`` section
against the worker count and sets data-parallel gradient averaging. Model and pipeline parallelism need Ascend.
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


def validate_parallel(cfg: LManConfig, world: int) -> None:
    p, device = cfg.parallel, cfg.context.device_target.upper()
    product = p.data_parallel * p.model_parallel * p.pipeline_stage
    if product != world:
        raise ConfigError(f"parallel: data_parallel ({p.data_parallel}) x model_parallel ({p.model_parallel}) x "
                          f"pipeline_stage ({p.pipeline_stage}) = {product}, but {world} worker(s) are running")
    if device == "CPU" and (p.model_parallel > 1 or p.pipeline_stage > 1):
        raise ConfigError("parallel: model_parallel and pipeline_stage > 1 need Ascend (semi-auto parallel has no "
                          "CPU support); on CPU use data_parallel only")
    if p.pipeline_stage > 1 and p.micro_batch_num < p.pipeline_stage:
        raise ConfigError(f"parallel: micro_batch_num ({p.micro_batch_num}) must be >= pipeline_stage "
                          f"({p.pipeline_stage})")
    if device == "CPU" and p.enable_parallel_optimizer:
        raise ConfigError("parallel.enable_parallel_optimizer needs Ascend")


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
    p = cfg.parallel
    if p.model_parallel > 1 or p.pipeline_stage > 1:
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.SEMI_AUTO_PARALLEL, device_num=info.world,
                                     pipeline_stages=p.pipeline_stage,
                                     enable_parallel_optimizer=p.enable_parallel_optimizer, gradients_mean=True)
    else:
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                     device_num=info.world)
    return info
