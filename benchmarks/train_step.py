"""Benchmark 1: a stage-2 training step (eq. 8) of a small L-Man in GRAPH_MODE versus the same model in Hugging Face
PyTorch (``torch_lman.py``), in samples/s after warmup. The first step of each side (graph compilation for
MindSpore, allocator and kernel warmup for PyTorch) is reported separately. Each side runs in its own worker
process (``worker.py``): the same batch, sizes, trainable set and optimiser on both.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Tuple

import numpy as np

from .common import (BenchContext, BenchmarkResult, Figure, median, set_mindspore_threads, set_torch_threads,
                     threads_label)
from .sizes import StepShape, lman_config, matmul_size, step_shape
from .worker import Worker


def make_batch(cfg, shape: StepShape, seed: int = 0) -> List[np.ndarray]:
    """(pixel_values, instruction_ids, instruction_mask, prefix_ids, input_ids, attention_mask, labels): the
    stage-2 inputs of ``Stage2LossCell``; labels on the last ``shape.answer`` positions, one sample padded."""
    rng = np.random.default_rng(seed)
    b, s, ti = shape.batch, cfg.vision.image_size, cfg.adapter.num_instruction_tokens
    ids = rng.integers(3, cfg.llm.vocab_size, (b, shape.text)).astype(np.int64)
    mask = np.ones((b, shape.text), np.int64)
    labels = np.full((b, shape.text), -100, np.int64)
    labels[:, -shape.answer:] = ids[:, -shape.answer:]
    if b > 1:  # a shorter sample, right-padded, as the data pipeline produces
        cut = shape.text - shape.answer // 2
        mask[-1, cut:], labels[-1, cut:] = 0, -100
    ins_mask = np.ones((b, ti), np.int64)
    ins_mask[:, ti * 3 // 4:] = 0
    return [rng.standard_normal((b, 3, s, s)).astype(np.float32),
            rng.integers(0, cfg.text.vocab_size - 2, (b, ti)).astype(np.int64), ins_mask,
            rng.integers(3, cfg.llm.vocab_size, (1, shape.prefix)).astype(np.int64), ids, mask, labels]


def build_ms_step(cfg) -> Tuple[Any, Dict[str, Dict[str, int]]]:
    """``TrainStep(Stage2LossCell(LMan))`` with stage-2 freezing and AdamW, as ``lman_ms.train`` builds it."""
    import mindspore as ms

    from lman_ms.models.lman import LMan, Stage2LossCell
    from lman_ms.train.freeze import apply_freezing
    from lman_ms.train.optim import build_optimizer
    from lman_ms.train.step import TrainStep

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    model = LMan(cfg)
    counts = apply_freezing(model, cfg.train, cfg.llm.num_hidden_layers)
    opt, _ = build_optimizer(model.trainable_params(), cfg.train)
    step = TrainStep(Stage2LossCell(model), opt, cfg.train.max_grad_norm)
    step.set_train(True)      # as the trainer runs it (and the PyTorch side's .train()): norms on the training kernels
    return step, counts


def ms_inputs(batch: List[np.ndarray]):
    import mindspore as ms
    pix, ins, ins_mask, prefix, ids, mask, labels = batch
    return [ms.Tensor(pix), ms.Tensor(ins.astype(np.int32)), ms.Tensor(ins_mask.astype(np.float32)),
            ms.Tensor(prefix.astype(np.int32)), ms.Tensor(ids.astype(np.int32)), ms.Tensor(mask.astype(np.float32)),
            ms.Tensor(labels.astype(np.int32))]


def _totals(counts: Dict[str, Dict[str, int]]) -> Dict[str, int]:
    return {"trainable": sum(c["trainable"] for c in counts.values()),
            "total": sum(c["total"] for c in counts.values())}


class _Side:
    """One framework's training step, served by ``worker.py`` in its own process."""

    def steps(self, n: int) -> Dict[str, List[float]]:
        seconds, losses = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            losses.append(self._step())
            seconds.append(time.perf_counter() - t0)
        return {"seconds": seconds, "losses": losses}

    def info(self) -> Dict[str, Any]:
        return {"counts": self.counts, "threads": self.threads}

    def matmul_gflops(self, n: int, repeat: int) -> Dict[str, float]:
        """fp32 matmul peak of this process's libraries, with its thread settings (for the MFU)."""
        from .mfu import matmul_gflops
        return {lib: matmul_gflops(lib, n, repeat) for lib in self.matmul_libraries}


class MsTrainSide(_Side):
    matmul_libraries = ("mindspore",)

    def __init__(self, quick: bool):
        import mindspore as ms

        self.threads = set_mindspore_threads()
        ms.set_seed(0)  # the same initial weights (and first loss) in every run, like torch.manual_seed(0)
        cfg = lman_config(quick)
        self.step_cell, self.counts = build_ms_step(cfg)
        self.batch = ms_inputs(make_batch(cfg, step_shape(quick)))

    def _step(self) -> float:
        return float(self.step_cell(*self.batch).asnumpy())  # asnumpy waits for the step to finish


class TorchTrainSide(_Side):
    matmul_libraries = ("torch", "numpy")  # numpy's BLAS reads the same thread count from the environment

    def __init__(self, quick: bool):
        import torch

        from .torch_lman import build_torch_step
        self.threads = set_torch_threads()
        torch.manual_seed(0)
        cfg = lman_config(quick)
        self.max_grad_norm = cfg.train.max_grad_norm
        self.model, self.opt, self.counts = build_torch_step(cfg)
        self.batch = [torch.from_numpy(x) for x in make_batch(cfg, step_shape(quick))]

    def _step(self) -> float:
        from .torch_lman import torch_train_step
        return torch_train_step(self.model, self.opt, self.batch, self.max_grad_norm)


def measure(ctx: BenchContext, threads: int) -> Dict[str, Any]:
    """Time both sides with ``threads`` intra-op threads each, each side in its own worker process, alternating
    round by round; cached in ``ctx.shared`` for the MFU benchmark. Seconds are per step (median of the timed
    steps)."""
    cache_key = f"train_step/{threads}"
    if cache_key in ctx.shared:
        return ctx.shared[cache_key]
    warmup, rounds, repeat = (1, 2, 1) if ctx.quick else (2, 4, 2)
    module = __name__
    ctx.log(f"train_step: {threads_label(threads)}: starting the MindSpore (GRAPH_MODE) and PyTorch workers")
    with Worker(module, "MsTrainSide", {"quick": ctx.quick}, ctx.work_dir, threads) as ms_side, \
            Worker(module, "TorchTrainSide", {"quick": ctx.quick}, ctx.work_dir, threads) as pt_side:
        sides = {"mindspore": ms_side, "torch": pt_side}
        first = {name: side.call("steps", 1) for name, side in sides.items()}
        ctx.log(f"train_step: first step (MindSpore compiles) {first['mindspore']['seconds'][0]:.1f}s, "
                f"PyTorch {first['torch']['seconds'][0]:.1f}s; timing {rounds} rounds x {repeat} steps per side")
        for side in sides.values():
            side.call("steps", warmup)
        timed = {name: {"seconds": [], "losses": []} for name in sides}
        for r in range(rounds):
            for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):  # neither side always goes first
                out = sides[name].call("steps", repeat)
                for key in ("seconds", "losses"):
                    timed[name][key] += out[key]
        info = {name: side.call("info") for name, side in sides.items()}
        mm_n, mm_repeat = matmul_size(ctx.quick)
        ctx.log(f"train_step: fp32 matmul peak ({mm_n}x{mm_n}) in both workers, for the MFU")
        peaks = {lib: g for side in sides.values() for lib, g in side.call("matmul_gflops", mm_n, mm_repeat).items()}
    out = {"config": lman_config(ctx.quick), "shape": step_shape(ctx.quick),
           "ms_seconds": median(timed["mindspore"]["seconds"]), "torch_seconds": median(timed["torch"]["seconds"]),
           "ms_first_step": first["mindspore"]["seconds"][0], "torch_first_step": first["torch"]["seconds"][0],
           "ms_counts": info["mindspore"]["counts"], "torch_counts": info["torch"]["counts"],
           "steps_timed": rounds * repeat, "ms_losses": first["mindspore"]["losses"] + timed["mindspore"]["losses"],
           "torch_losses": first["torch"]["losses"] + timed["torch"]["losses"],
           "threads": {name: info[name]["threads"] for name in sides}, "matmul_gflops": peaks}
    ctx.shared[cache_key] = out
    return out


def run(ctx: BenchContext) -> BenchmarkResult:
    figures, per_threads = [], {}
    for threads in ctx.comparison_threads():
        m = measure(ctx, threads)
        cfg, shape = m["config"], m["shape"]
        ms_rate, pt_rate = shape.batch / m["ms_seconds"], shape.batch / m["torch_seconds"]
        ms_tot, pt_tot = _totals(m["ms_counts"]), _totals(m["torch_counts"])
        if ms_tot != pt_tot:  # the two sides must do the same work for the ratio to mean anything
            raise RuntimeError(f"parameter counts differ: MindSpore {ms_tot} vs PyTorch {pt_tot}")
        seq = shape.prefix + cfg.adapter.num_query_tokens + shape.text
        label = threads_label(threads)
        figures += [
            Figure(f"stage-2 training step, {label}", "samples/s", ms_rate, "HF PyTorch eager + AdamW", pt_rate,
                   note=f"batch {shape.batch}, LLM sequence {seq}, median of {m['steps_timed']} steps"),
            Figure(f"first step (compile / warmup), {label}", "s", m["ms_first_step"], "HF PyTorch first step",
                   m["torch_first_step"], better="lower", note="excluded from samples/s"),
        ]
        per_threads[str(threads)] = {
            "ms_step_seconds": m["ms_seconds"], "torch_step_seconds": m["torch_seconds"],
            "ms_loss_first_last": [m["ms_losses"][0], m["ms_losses"][-1]],
            "torch_loss_first_last": [m["torch_losses"][0], m["torch_losses"][-1]],
            "threads": m["threads"]}
    v, a, l = cfg.vision, cfg.adapter, cfg.llm
    details = {
        "sizes": (f"ViT {v.num_hidden_layers}x{v.hidden_size} image {v.image_size}/{v.patch_size}, adapter "
                  f"{a.num_hidden_layers}x{a.hidden_size} ({a.num_query_tokens} queries + "
                  f"{a.num_instruction_tokens} instruction tokens), LLaMA {l.num_hidden_layers}x{l.hidden_size} "
                  f"(intermediate {l.intermediate_size}, vocab {l.vocab_size}), last "
                  f"{cfg.train.trainable_llm_layers} LLM layer(s) trained"),
        "parameters": ms_tot, "batch": shape.batch, "llm_sequence": seq, "per_threads": per_threads,
    }
    return BenchmarkResult("train_step", "Training step (stage 2, GRAPH_MODE vs PyTorch)", figures, details)
