"""Benchmark 6: the HTTP server (``tools/serve.py``) under concurrent clients vs the same requests one by one.

A tiny stage-2 model (``configs/tiny_cpu.yaml``, random weights, a sentencepiece tokenizer trained on a few
sentences) is written as a model folder and served by ``tools/serve.py`` in a process of its own on a free port of
127.0.0.1. ``lman_ms.serve.loadtest`` then streams the same requests (synthetic pictures, greedy, ``max_tokens``
answer tokens each: random weights rarely stop early, so every pass generates about the same tokens) one by one
and with N concurrent clients, after untimed passes at each concurrency (the server compiles a graph per batch and
prompt bucket on first use). The figure is aggregate answer tokens/s with N clients against the same requests one
by one (the faster of the two one-by-one passes); the time to first token of each pass is in the details. Dynamic
batching is what the ratio measures: requests that arrive together are answered as one left-padded batch on the
server's one model thread.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from .common import BenchContext, BenchmarkResult, Figure

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TEXTS = ["A chat between a user and an assistant. USER: ASSISTANT:", "Find every face in the image.",
          "What is the facial expression of this person?", "There are 2 faces in the picture. They are located in: "
          "[12, 30, 40, 66], [50, 8, 77, 41].", "The facial expression of this person is happiness."]


def _model_folder(work: str) -> str:
    import mindspore as ms
    from lman_ms.config import load_config
    from lman_ms.data.tokenizers import train_sentencepiece
    from lman_ms.models.lman import LMan
    from lman_ms.models.loader import save_pretrained
    tok = os.path.join(work, "serving_tokenizer")
    train_sentencepiece(_TEXTS * 20, tok, vocab_size=400)
    cfg = load_config(os.path.join(REPO, "configs", "tiny_cpu.yaml"),
                      [f"data.tokenizer_path={tok}", "llm.vocab_size=400", "text.vocab_size=400",
                       "text.bos_token_id=1", "text.eos_token_id=2", "text.pad_token_id=0"])
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.set_seed(0)
    return save_pretrained(LMan(cfg, stage=2), cfg, os.path.join(work, "serving_model"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(proc, url: str, log_path: str, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tools/serve.py exited with {proc.returncode}; its log: {log_path}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"tools/serve.py did not answer /health within {timeout:.0f} s; its log: {log_path}")


def run(ctx: BenchContext) -> BenchmarkResult:
    from lman_ms.serve.loadtest import load_test
    clients, n_requests, max_tokens, warmup = ((1, 4), 8, 8, 1) if ctx.quick else ((1, 8, 24), 48, 32, 2)
    folder = _model_folder(ctx.work_dir)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = os.path.join(ctx.work_dir, "serving_server.log")
    env = {**os.environ, **{k: str(ctx.threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    ctx.log(f"serving: tools/serve.py on {url}, clients {list(clients)}, {n_requests} requests x {max_tokens} tokens")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, os.path.join(REPO, "tools", "serve.py"), "--ckpt", folder,
                                 "--host", "127.0.0.1", "--port", str(port), "--max-batch-size", "8"],
                                cwd=ctx.work_dir, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_ready(proc, url, log_path)
            result = load_test(url, clients, n_requests, max_tokens, warmup=warmup)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    # the reference is the faster of the two one-by-one passes (the first after warm-up, and the timed 1-client
    # pass): a pass slowed by a late compile or another process would inflate every ratio
    seq = max([result["sequential"]] + [r for r in result["runs"] if r["clients"] == 1],
              key=lambda r: r["tokens_per_s"])
    figures = []
    for r in result["runs"]:
        if r["errors"]:
            raise RuntimeError(f"serving: {len(r['errors'])} failed requests with {r['clients']} clients: "
                               f"{r['errors'][:3]}")
        if r["clients"] == 1:
            continue
        figures.append(Figure(f"serving, {r['clients']} concurrent clients", "tokens/s", r["tokens_per_s"],
                              "the same requests one by one", seq["tokens_per_s"],
                              note=f"TTFT p50 {r['ttft_p50_s'] * 1000:.0f} ms (one by one "
                                   f"{seq['ttft_p50_s'] * 1000:.0f} ms), {r['mismatches']} greedy answers differing "
                                   f"from the sequential pass"))
    details = {"requests": n_requests, "max_tokens": max_tokens, "max_batch_size": 8, "warmup_passes": warmup,
               "sequential": seq, "runs": result["runs"]}
    return BenchmarkResult("serving", "HTTP server: concurrent clients vs one by one (answer tokens/s)", figures,
                           details)
