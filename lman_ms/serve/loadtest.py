"""Load test of a running server: aggregate answer tokens/s and time to first token with 1, 8, 24 ... concurrent
clients, against the same requests sent one by one.

    python -m lman_ms.serve.loadtest --url http://127.0.0.1:8000 --clients 1 8 24 [--requests 48]
        [--max-tokens 32] [--image IMG ...] [--output RESULT.json]

Every request is streamed (server-sent events), so the time to its first answer text is measured as a client
sees it; tokens are the server's ``usage.completion_tokens``. The sequential pass runs first and its answers are
the reference: with greedy decoding every concurrent answer must be the same text (a batching error shows up as
``mismatches``). Without ``--image`` the requests carry synthetic pictures (one per request, so that no two
requests are the same). Uses only the standard library: the client machine needs nothing else.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import sys
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

QUESTIONS = ("Find every face in the image.", "What is the facial expression of this person?",
             "What is the person in the image doing?", "Where are the pedestrians in this image?")


@dataclass
class Result:
    text: str
    tokens: int
    ttft_s: float          # request sent -> first answer text
    latency_s: float       # request sent -> [DONE]


@dataclass
class Run:
    clients: int
    requests: int
    wall_s: float
    tokens: int
    tokens_per_s: float
    ttft_p50_s: float
    ttft_p90_s: float
    latency_p50_s: float
    speedup: float = 1.0   # tokens/s over the sequential pass
    mismatches: int = 0    # answers that differ from the sequential pass (greedy)
    errors: List[str] = field(default_factory=list)


def synthetic_png(i: int, size: int = 96) -> bytes:
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (size, size), (110 + 7 * (i % 13), 120, 130 + 5 * (i % 17)))
    d = ImageDraw.Draw(img)
    x, y = (13 * i) % (size // 2), (29 * i) % (size // 2)
    d.rectangle([x, y, x + size // 3, y + size // 3], fill=((60 * i) % 255, 200, (90 * i) % 255))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def build_requests(n: int, max_tokens: int, images: Sequence[str] = ()) -> List[dict]:
    raws = []
    for path in images:
        with open(path, "rb") as f:
            raws.append(f.read())
    out = []
    for i in range(n):
        raw = raws[i % len(raws)] if raws else synthetic_png(i)
        url = "data:image/png;base64," + base64.b64encode(raw).decode("ascii")
        out.append({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": QUESTIONS[i % len(QUESTIONS)]}]}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True})
    return out


def stream_one(base: urllib.parse.SplitResult, body: dict, timeout: float) -> Result:
    conn = http.client.HTTPConnection(base.hostname, base.port or 80, timeout=timeout)
    try:
        t0 = time.perf_counter()
        conn.request("POST", base.path.rstrip("/") + "/v1/chat/completions", json.dumps(body),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
        text, tokens, ttft = "", 0, None
        for raw in resp:
            line = raw.decode("utf-8").strip()
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                break
            event = json.loads(line[6:])
            if "error" in event:
                raise RuntimeError(event["error"]["message"])
            delta = event["choices"][0]["delta"].get("content")
            if delta:
                ttft = time.perf_counter() - t0 if ttft is None else ttft
                text += delta
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
        latency = time.perf_counter() - t0
        return Result(text, tokens, latency if ttft is None else ttft, latency)
    finally:
        conn.close()


def _percentile(values: List[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run(url: str, requests: List[dict], clients: int, timeout: float = 600.0) -> (Run, List[Optional[Result]]):
    """Send ``requests`` from ``clients`` threads (each takes the next unsent request when its last is answered)."""
    base = urllib.parse.urlsplit(url)
    results: List[Optional[Result]] = [None] * len(requests)
    errors: List[str] = []
    lock = threading.Lock()
    next_index = iter(range(len(requests)))

    def client():
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            try:
                results[i] = stream_one(base, requests[i], timeout)
            except Exception as e:  # reported, not fatal: the load test measures what did answer
                with lock:
                    errors.append(f"request {i}: {type(e).__name__}: {e}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    wall = time.perf_counter() - t0
    done = [r for r in results if r is not None]
    tokens = sum(r.tokens for r in done)
    return Run(clients, len(requests), wall, tokens, tokens / wall if wall > 0 else 0.0,
               _percentile([r.ttft_s for r in done], 0.5), _percentile([r.ttft_s for r in done], 0.9),
               _percentile([r.latency_s for r in done], 0.5), errors=errors), results


def load_test(url: str, clients: Sequence[int], n_requests: int, max_tokens: int, images: Sequence[str] = (),
              warmup: int = 2) -> Dict:
    requests = build_requests(n_requests, max_tokens, images)
    # Every timed pass follows untimed passes of the same requests at the same concurrency: the server compiles
    # one graph per (batch bucket, prompt-length bucket) on first use, seconds each on CPU, which is start-up
    # cost, not throughput.
    for _ in range(warmup):
        run(url, requests, 1)
    sequential, reference = run(url, requests, 1)
    out = {"url": url, "requests": n_requests, "max_tokens": max_tokens, "sequential": asdict(sequential), "runs": []}
    for c in clients:
        for _ in range(warmup):
            run(url, requests, c)
        r, results = run(url, requests, c)
        r.speedup = r.tokens_per_s / sequential.tokens_per_s if sequential.tokens_per_s else float("nan")
        r.mismatches = sum(1 for a, b in zip(results, reference) if a is not None and b is not None
                           and a.text != b.text)
        out["runs"].append(asdict(r))
    return out


def format_table(result: Dict) -> str:
    seq = result["sequential"]
    rows = [f"sequential: {seq['tokens']} tokens in {seq['wall_s']:.2f} s = {seq['tokens_per_s']:.1f} tokens/s, "
            f"time to first token p50 {seq['ttft_p50_s'] * 1000:.0f} ms",
            "| clients | tokens/s | x sequential | TTFT p50 (ms) | TTFT p90 (ms) | latency p50 (s) | mismatches | errors |",
            "|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        rows.append(f"| {r['clients']} | {r['tokens_per_s']:.1f} | {r['speedup']:.2f} | {r['ttft_p50_s'] * 1000:.0f} "
                    f"| {r['ttft_p90_s'] * 1000:.0f} | {r['latency_p50_s']:.2f} | {r['mismatches']} "
                    f"| {len(r['errors'])} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 24])
    ap.add_argument("--requests", type=int, default=48, help="requests per pass (default 48)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--image", nargs="*", default=[], help="images to send (default: synthetic pictures)")
    ap.add_argument("--output", help="write the result as JSON")
    args = ap.parse_args(argv)
    if min(args.clients) < 1 or args.requests < 1 or args.max_tokens < 1:
        ap.error("--clients, --requests and --max-tokens must be >= 1")
    result = load_test(args.url, args.clients, args.requests, args.max_tokens, args.image)
    print(format_table(result))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    errors = sum(len(r["errors"]) for r in result["runs"]) + len(result["sequential"]["errors"])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
