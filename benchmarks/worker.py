"""Each framework of a comparison in its own process, driven by the benchmark process over a line protocol.

Why: MindSpore's runtime threads and PyTorch's intra-op pool compete when both live in one process. Measured
here: the HF PyTorch training step ran 7x slower once a MindSpore graph had run in the same process. A user runs
one framework per process, so each side gets its own process; the benchmark process holds neither.
Keeping the workers alive lets the two sides be timed alternately, round by round, without paying start-up and
compilation again.

    python -m benchmarks.worker MODULE CLASS KWARGS_JSON

builds ``MODULE.CLASS(**kwargs)`` (which sets its framework's threads to ``$LMAN_BENCH_THREADS``), then answers one JSON request per stdin line, ``{"method": m, "args": [...]}``,
with one line ``<MARKER>{"result": ...}`` or ``<MARKER>{"error": traceback}`` on stdout. Libraries may print
their own lines on stdout: only marked lines are protocol.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import traceback
from typing import Any, Dict

from benchmarks.common import default_threads, thread_env

MARKER = "@@lman-bench@@"
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class WorkerError(RuntimeError):
    pass


class Worker:
    """Parent side: ``Worker("benchmarks.train_step", "TorchTrainSide", {...}).call("steps", 3)``."""

    def __init__(self, module: str, cls: str, kwargs: Dict[str, Any], cwd: str, threads: int = 0):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (_REPO, os.environ.get("PYTHONPATH")) if p))
        env.update(thread_env(threads or default_threads()))
        self.name = f"{module.rsplit('.', 1)[-1]}.{cls}"
        self._stderr = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty worker never blocks on it
        self._proc = subprocess.Popen([sys.executable, "-m", __name__, module, cls, json.dumps(kwargs)], cwd=cwd,
                                      env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr, text=True, bufsize=1)
        self._read()  # the constructor's answer: raises if building the side failed

    def _read(self) -> Any:
        for line in self._proc.stdout:
            if line.startswith(MARKER):
                reply = json.loads(line[len(MARKER):])
                if "error" in reply:
                    raise WorkerError(f"{self.name}: {reply['error']}")
                return reply["result"]
        self._stderr.seek(0)
        raise WorkerError(f"{self.name} exited ({self._proc.wait()}): {self._stderr.read().strip()[-2000:]}")

    def call(self, method: str, *args) -> Any:
        self._proc.stdin.write(json.dumps({"method": method, "args": list(args)}) + "\n")
        self._proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()  # EOF ends the serve loop
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._stderr.close()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reply(payload: Dict[str, Any]) -> None:
    sys.stdout.write(MARKER + json.dumps(payload) + "\n")
    sys.stdout.flush()


def serve(module: str, cls: str, kwargs_json: str) -> int:
    try:
        side = getattr(importlib.import_module(module), cls)(**json.loads(kwargs_json))
    except Exception:  # noqa: BLE001 - reported to the parent, which raises it
        _reply({"error": traceback.format_exc()})
        return 1
    _reply({"result": None})
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            _reply({"result": getattr(side, request["method"])(*request.get("args", []))})
        except Exception:  # noqa: BLE001
            _reply({"error": traceback.format_exc()})
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(serve(*sys.argv[1:]))
