"""Data-parallel training on CPU through the real launcher: bash scripts/run_distribute_train.sh CONFIG 2."""
import json
import os
import socket
import subprocess

from toy_data import make_toy_humanins, toy_overrides

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_end_identical_and_loss_falls(tmp_path):
    root = str(tmp_path)
    out, tok = make_toy_humanins(root)
    over = toy_overrides(root, out, tok, steps=8) + ["parallel.data_parallel=2", "train.learning_rate=3e-3"]
    log_dir = os.path.join(root, "msrun_log")
    cmd = ["bash", os.path.join(REPO, "scripts", "run_distribute_train.sh"), os.path.join(REPO, "configs/tiny_cpu.yaml"),
           "2", "2", "127.0.0.1", str(_free_port()), "0", log_dir, "--", "--set", *over]
    res = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=1200)
    logs = "".join(open(os.path.join(log_dir, f)).read()[-3000:] for f in os.listdir(log_dir))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:] + logs
    run = os.path.join(root, "run")
    digests = [json.load(open(os.path.join(run, f"replica_rank{r}.json"))) for r in (0, 1)]
    assert digests[0]["world"] == 2 and digests[0]["step"] == 8
    assert digests[0]["sha256"] == digests[1]["sha256"]           # both ranks hold the same weights
    rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]   # rank 0 only writes it
    assert [r["step"] for r in rows] == list(range(1, 9))
    by_task = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r["loss"])
    assert any(len(v) >= 2 for v in by_task.values())
    for task, losses in by_task.items():
        if len(losses) >= 2:
            assert losses[-1] < losses[0], (task, losses)
