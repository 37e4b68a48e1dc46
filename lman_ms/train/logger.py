"""Rank-0 training log: one line per N steps (step, losses, lr, samples/s, tokens/s, ETA), the same as JSON lines
in ``OUTPUT_DIR/metrics.jsonl`` (appended and flushed per line, so nothing written is lost on a crash), and a tqdm
bar when a terminal is attached. Held-out evaluations go to the same file as ``{"step", "eval_loss", ...}`` lines."""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Dict, Optional

from tqdm import tqdm

logger = logging.getLogger("lman_ms.train")


def setup_logging(is_main: bool) -> None:
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout)


def _eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


class TrainLogger:
    def __init__(self, output_dir: str, total_steps: int, start_step: int, is_main: bool, log_steps: int):
        self.is_main, self.log_steps, self.total = is_main, max(1, log_steps), total_steps
        self.path = os.path.join(output_dir, "metrics.jsonl")
        self.file = open(self.path, "a", encoding="utf-8") if is_main else None
        self.bar: Optional[tqdm] = None
        if is_main and sys.stderr.isatty():
            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)
        self._t0, self._window_start = time.perf_counter(), time.perf_counter()
        self._samples = self._tokens = 0
        self._start_step = start_step

    def step(self, step: int, losses: Dict[str, float], lr: float, samples: int, tokens: int, task: str = "") -> None:
        """Record a finished step (1-based ``step``)."""
        self._samples += samples
        self._tokens += tokens
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()})
        if not self.is_main or (step % self.log_steps and step != self.total):
            return
        now = time.perf_counter()
        dt = max(now - self._window_start, 1e-9)
        rate = (step - self._start_step) / max(now - self._t0, 1e-9)
        rec = {"step": step, **{k: round(v, 6) for k, v in losses.items()}, "lr": lr,
               "samples_per_s": round(self._samples / dt, 3), "tokens_per_s": round(self._tokens / dt, 1),
               "eta_s": round((self.total - step) / rate, 1) if rate > 0 else None, "task": task,
               "time": round(time.time(), 3)}
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())
        msg = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
        logger.info("step %d/%d %s lr %.3e %.2f samples/s %.0f tokens/s eta %s %s", step, self.total, msg, lr,
                    rec["samples_per_s"], rec["tokens_per_s"], _eta(rec["eta_s"] or 0), task)
        self._window_start, self._samples, self._tokens = now, 0, 0

    def eval(self, step: int, result: Dict[str, object]) -> None:
        """Record a held-out evaluation: a metrics.jsonl line ``{"step", "eval_loss", ...}`` and a log line."""
        if not self.is_main:
            return
        rec = {"step": step, **{k: round(v, 6) if isinstance(v, float) else v for k, v in result.items()},
               "time": round(time.time(), 3)}
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())
        losses = " ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float))
        logger.info("step %d/%d held-out (%s, %s batches): %s", step, self.total, result.get("eval_split"),
                    result.get("eval_batches"), losses)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file is not None:
            self.file.close()
