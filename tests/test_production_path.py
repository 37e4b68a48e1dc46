"""The production path as a user takes it, on configs/tiny_stage2_lora.yaml (the 7B stage-2 settings at toy
sizes): `bash scripts/run_distribute_train.sh` with 2 CPU workers, killed after a checkpoint and resumed, held-out
loss logged, the model folder written at the end; then tools/export.py and tools/lite_infer.py --backend graphcell,
whose answer equals tools/infer.py's on the same checkpoint."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "train"))
from toy_data import make_toy_humanins  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "tiny_stage2_lora.yaml")
MAX_STEPS = 8
INSTRUCTION = "What is the facial expression of this person?"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _held_out_split(humanins):
    """The toy builder writes train records only; its records double as the held-out (test) split here."""
    for ds in os.listdir(humanins):
        d = os.path.join(humanins, ds)
        shutil.copyfile(os.path.join(d, "train-00000.jsonl"), os.path.join(d, "test-00000.jsonl"))
        shutil.copyfile(os.path.join(d, "train.meta.json"), os.path.join(d, "test.meta.json"))


def _launch(root, overrides, log_dir, *extra):
    cmd = ["bash", os.path.join(REPO, "scripts", "run_distribute_train.sh"), CONFIG, "2", "2", "127.0.0.1",
           str(_free_port()), "0", log_dir, "--", *extra, "--set", *overrides]
    # a session of its own, so that the whole msrun tree (launcher + workers) can be killed at once
    return subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _logs(log_dir):
    return "".join(open(os.path.join(log_dir, f), errors="replace").read()[-3000:] for f in sorted(os.listdir(log_dir)))


def _tool(name, *args):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", f"{name}.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)


def test_distributed_lora_run_interrupted_resumed_exported_and_served(tmp_path):
    root = str(tmp_path)
    humanins, tok = make_toy_humanins(root, n=12)
    _held_out_split(humanins)
    run = os.path.join(root, "run")
    overrides = [f"data.train_path={humanins}", f"data.eval_path={humanins}", f"data.tokenizer_path={tok}",
                 f"train.output_dir={run}", f"train.max_steps={MAX_STEPS}", "llm.vocab_size=400",
                 "text.vocab_size=400", "text.bos_token_id=1", "text.eos_token_id=2", "text.pad_token_id=0",
                 "train.log_file=false"]

    # 1. killed (SIGKILL, the whole process group) once the step-2 checkpoint is complete
    first_logs = os.path.join(root, "log1")
    proc = _launch(root, overrides, first_logs)
    first = os.path.join(run, "checkpoints", "step_00000002", "state.json")
    deadline = time.time() + 1200
    while not os.path.exists(first) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert os.path.exists(first), (proc.communicate()[0] or "")[-3000:] + _logs(first_logs)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    from lman_ms.models.loader import latest_checkpoint
    interrupted_at = int(json.load(open(os.path.join(latest_checkpoint(run), "state.json")))["step"])
    assert 2 <= interrupted_at < MAX_STEPS, "the first run finished before it could be interrupted"
    assert not os.path.isdir(os.path.join(run, "model"))

    # 2. resumed from the newest complete checkpoint, to the end
    second_logs = os.path.join(root, "log2")
    proc = _launch(root, overrides, second_logs, "--resume", run)
    out, _ = proc.communicate(timeout=1500)
    assert proc.returncode == 0, out[-3000:] + _logs(second_logs)
    digests = [json.load(open(os.path.join(run, f"replica_rank{r}.json"))) for r in (0, 1)]
    assert digests[0]["step"] == MAX_STEPS and digests[0]["sha256"] == digests[1]["sha256"]
    rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps[-1] == MAX_STEPS and interrupted_at + 1 in steps       # the resumed run went on from there
    evals = [r for r in rows if "eval_loss" in r]
    assert evals and evals[-1]["step"] == MAX_STEPS and all(r["eval_loss"] > 0 for r in evals)
    model = os.path.join(run, "model")
    assert sorted(os.listdir(model)) == ["clip_tokenizer", "config.yaml", "model.ckpt", "tokenizer"]

    # 3. export the training checkpoint (LoRA merged by the loader), answer through the graphs and through the
    #    eager predictor on the model folder: the same text
    export = os.path.join(root, "export")
    res = _tool("export", "--ckpt", run, "--output_dir", export)
    assert res.returncode == 0, res.stderr[-3000:]
    image = os.path.join(root, "images", "img_000.png")
    lite = _tool("lite_infer", "--export_dir", export, "--backend", "graphcell", "--image", image,
                 "--instruction", INSTRUCTION, "--max-new-tokens", 12)
    assert lite.returncode == 0, lite.stderr[-3000:]
    eager = _tool("infer", "--ckpt", model, "--image", image, "--instruction", INSTRUCTION, "--max-new-tokens", 12)
    assert eager.returncode == 0, eager.stderr[-3000:]
    # stdout is the answer alone (mindformers' console log goes to stderr), the same text through both routes
    assert lite.stdout.strip() and lite.stdout == eager.stdout
