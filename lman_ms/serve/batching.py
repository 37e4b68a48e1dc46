"""Dynamic batching: requests wait in an asyncio queue; requests that arrive together (within ``window_s``, or
while the model is busy) with the same input size and sampling settings are answered as one left-padded batch of at
most ``max_batch_size`` by the one model thread (MindSpore is not thread-safe: no other thread calls it).

Each request's events (``("delta", text)``, ``("done", answer, finish_reason, usage)``, ``("error", message)``)
go to its own asyncio queue, so a streamed answer leaves token by token while its batch is still decoding.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, List, Optional, Tuple

import numpy as np

from lman_ms.serve.schemas import RequestError
from lman_ms.serve.stream import TextStream

logger = logging.getLogger("lman_ms.serve")


@dataclass
class Job:
    image: bytes
    task: Optional[str]
    adapter_text: str
    prompt: List[int]
    max_tokens: int
    stop: List[str]
    sampling: Tuple[float, float, Optional[int]]   # temperature (0: greedy), top_p, seed
    system: Optional[str] = None
    events: Optional[asyncio.Queue] = None
    loop: Optional[asyncio.AbstractEventLoop] = None
    cancelled: bool = False                         # the client left: its row stops at the next step
    size: int = 0                                   # model input size of its task (set by the batcher)
    id: int = field(default_factory=itertools.count().__next__)

    @property
    def key(self):
        """Requests with equal keys can share a batch."""
        return (self.size, self.system, self.sampling if self.sampling[0] > 0 else None)

    def post(self, *event: Any) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class Batcher:
    def __init__(self, engine_factory: Callable[[], Any], max_batch_size: int = 8, window_s: float = 0.01,
                 max_queue: int = 256):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.engine_factory = engine_factory
        self.engine = None
        self.max_batch_size, self.window_s, self.max_queue = max_batch_size, window_s, max_queue
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="lman-model")
        self.pending: Deque[Job] = deque()
        self.batches = 0
        self.largest_batch = 0
        self.running = 0            # requests in the batch being decoded
        self.abandoned = 0          # requests whose client left before the answer was complete
        self._wakeup: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None
        self._model_thread: Optional[threading.Thread] = None

    # ---- lifecycle (event loop) ------------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.engine = await loop.run_in_executor(self.executor, self._load)
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._serve())

    def _load(self):
        self._model_thread = threading.current_thread()
        return self.engine_factory()

    async def stop(self) -> None:
        """Answer everything already queued, then release the model thread."""
        while self.pending or self.running:
            await asyncio.sleep(0.05)
        if self._task is not None:
            self._task.cancel()
        self.executor.shutdown(wait=True)

    # ---- requests (event loop) -------------------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        if len(self.pending) >= self.max_queue:
            raise RequestError(503, f"the server is busy ({len(self.pending)} requests queued); retry shortly",
                               "server_busy", headers={"Retry-After": "1"})
        job.loop = asyncio.get_running_loop()
        job.events = asyncio.Queue()
        job.size = self.engine.input_size(job.task)
        self.pending.append(job)
        self._wakeup.set()

    def stats(self) -> dict:
        return {"queued": len(self.pending), "running": self.running, "batches": self.batches,
                "largest_batch": self.largest_batch, "max_batch_size": self.max_batch_size,
                "abandoned": self.abandoned}

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self.pending:
                if len(self.pending) < self.max_batch_size and self.window_s > 0:
                    await asyncio.sleep(self.window_s)  # let the rest of a burst arrive
                batch = self._take()
                if not batch:
                    continue
                self.running = len(batch)
                try:
                    await loop.run_in_executor(self.executor, self.run_batch, batch)
                finally:
                    self.running = 0

    def _take(self) -> List[Job]:
        """The oldest live request and the next ones that can share its batch, in arrival order."""
        while self.pending and self.pending[0].cancelled:
            self.pending.popleft()
            self.abandoned += 1
        if not self.pending:
            return []
        key = self.pending[0].key
        batch, rest = [], deque()
        for job in self.pending:
            if job.cancelled:
                self.abandoned += 1
                continue
            (batch if job.key == key and len(batch) < self.max_batch_size else rest).append(job)
        self.pending = rest
        return batch

    # ---- the model thread ------------------------------------------------------------------------------------------
    def run_batch(self, jobs: List[Job]) -> None:
        assert threading.current_thread() is self._model_thread, "MindSpore is called from one thread only"
        engine = self.engine
        streams = [TextStream(engine.tokenizer, j.stop, j.max_tokens) for j in jobs]
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(jobs))

        def on_token(step: int, tokens: np.ndarray, finished: np.ndarray) -> np.ndarray:
            halt = np.zeros(len(jobs), bool)
            for b, (job, s) in enumerate(zip(jobs, streams)):
                if not s.done:
                    delta = s.push(int(tokens[b]))
                    if delta:
                        job.post("delta", delta)
                if job.cancelled and not s.done:
                    s.finish("abandoned")
                    self.abandoned += 1
                halt[b] = s.done
            return halt

        try:
            pixels = np.stack([engine.pixels(j.image, j.task) for j in jobs])
            temperature, top_p, seed = jobs[0].sampling
            generation = {"max_new_tokens": max(j.max_tokens for j in jobs)}
            if temperature > 0:
                generation.update(do_sample=True, temperature=temperature, top_p=top_p, seed=seed)
            engine.generate(pixels, [j.adapter_text for j in jobs], [j.prompt for j in jobs], generation,
                            on_token=on_token, system=jobs[0].system)
        except Exception as e:  # the server survives a failed batch: its requests get the error
            logger.exception("batch of %d failed", len(jobs))
            for j in jobs:
                j.post("error", f"{type(e).__name__}: {e}")
            return
        for job, s in zip(jobs, streams):
            delta = s.finish("length")
            if delta:
                job.post("delta", delta)
            usage = {"prompt_tokens": len(job.prompt) + engine.visual_len, "completion_tokens": len(s.ids),
                     "total_tokens": len(job.prompt) + engine.visual_len + len(s.ids)}
            job.post("done", s.answer, s.finish_reason, usage)
