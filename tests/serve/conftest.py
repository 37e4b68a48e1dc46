"""A briefly trained tiny checkpoint (built once per session) and the real server on 127.0.0.1 over it."""
import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "train"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(root, checkpoint output dir): tiny_cpu trained for 2 steps on the toy set (tests/train/toy_data.py)."""
    from toy_data import make_toy_humanins, toy_overrides
    from lman_ms.config import load_config
    from lman_ms.train.trainer import Trainer
    root = str(tmp_path_factory.mktemp("serve"))
    out, tok = make_toy_humanins(root)
    cfg = load_config(os.path.join(REPO, "configs/tiny_cpu.yaml"), toy_overrides(root, out, tok, steps=2))
    Trainer(cfg).fit()
    return root, os.path.join(root, "run")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """tools/serve.py in a subprocess on a free local port; ``stop()`` sends SIGTERM (graceful) and waits."""

    def __init__(self, ckpt: str, log_path: str, *extra: str):
        """``ckpt``: a checkpoint for --ckpt, or ``extra`` names the model (``--export_dir D``) and ckpt is None."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "w")
        model = ["--ckpt", ckpt] if ckpt else []
        self.proc = subprocess.Popen([sys.executable, os.path.join(REPO, "tools", "serve.py"), *model,
                                      "--host", "127.0.0.1", "--port", str(self.port), *extra],
                                     cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        self.log_path = log_path

    def wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"server not ready within {timeout} s:\n{self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()[-4000:]

    def stop(self, timeout: float = 120.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    root, ckpt = trained
    srv = Server(ckpt, str(tmp_path_factory.mktemp("serve_log") / "server.log"), "--max-batch-size", "8",
                 "--max-queue", "64", "--max-image-mb", "0.5", "--max-body-mb", "1", "--served-model-name", "lman-tiny")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def png_bytes(seed: int = 0, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    arr = np.full((size, size, 3), 128, np.uint8)
    x, y = rng.integers(2, size // 2, 2)
    arr[y:y + size // 2, x:x + size // 2] = rng.integers(0, 255, 3)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode("ascii")


def chat_body(raw: bytes, question: str, **fields) -> dict:
    return {"model": "lman", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(raw)}}, {"type": "text", "text": question}]}],
        "max_tokens": 8, **fields}


def post(url: str, body, timeout: float = 300.0, raw: bytes = None, headers=None):
    """(status, headers, parsed JSON) of a POST; ``raw`` sends those bytes instead of ``body`` as JSON."""
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def stream(url: str, body: dict, timeout: float = 300.0):
    """The JSON events of a streamed completion, up to ``[DONE]``."""
    req = urllib.request.Request(url, data=json.dumps(dict(body, stream=True)).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    events = []
    with urllib.request.urlopen(req, timeout=timeout) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                return events
            events.append(json.loads(line[6:]))
    raise AssertionError("the stream ended without [DONE]")
