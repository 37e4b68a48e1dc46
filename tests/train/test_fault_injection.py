"""Fault injection: ``tools/train.py`` is SIGKILLed at seeded random points (mid-step and in the middle of checkpoint
writes) and resumed each time. After every kill every checkpoint folder present is complete and loads, none is lost
(the steps present are consecutive up to the newest), the resumed run starts from the newest complete checkpoint,
and the last run finishes at ``max_steps``."""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import mindspore as ms
import pytest

from lman_ms.train.checkpoint import latest_checkpoint

from toy_data import make_toy_humanins, toy_overrides

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_STEPS, KEEP_LAST, SLOW = 10, 2, 0.4

# tools/train.py as users run it, with the checkpoint writer's ms.save_checkpoint and shutil.rmtree (pruning) slowed
# down when asked and announced by flag files, so that a kill can be aimed into a checkpoint write or a prune.
WRAPPER = r"""
import os, re, runpy, shutil, sys, time, types
sys.path.insert(0, {repo!r})
import lman_ms.train.checkpoint as ck
real_save = ck.ms.save_checkpoint
slow = float(os.environ.get("FAULT_SLOW", "0"))
flags = {flags!r}
def announced_save(cell, path, *a, **k):
    found = re.search(r"step_(\d+)", path)
    if found is None:    # the model folder a stage-2 run ends with (written atomically by the loader)
        return real_save(cell, path, *a, **k)
    step = int(found.group(1))
    open(os.path.join(flags, f"save_{{step}}"), "w").close()
    time.sleep(slow)
    real_save(cell, path, *a, **k)
    time.sleep(slow)
def announced_rmtree(path, ignore_errors=False, **k):
    m = re.fullmatch(r"\.?step_(\d+)(\.old)?", os.path.basename(path))
    if not slow or not m or not os.path.isdir(path):
        return shutil.rmtree(path, ignore_errors=ignore_errors, **k)
    open(os.path.join(flags, f"prune_{{int(m.group(1))}}"), "w").close()
    for name in sorted(os.listdir(path)):       # file by file, as rmtree does, with time for a kill in between
        os.unlink(os.path.join(path, name))
        time.sleep(slow / 4)
    os.rmdir(path)
ck.ms.save_checkpoint = announced_save
ck.shutil = types.SimpleNamespace(rmtree=announced_rmtree)
sys.argv = [{train!r}] + sys.argv[1:]
runpy.run_path({train!r}, run_name="__main__")
"""


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("fault"))
    out, tok = make_toy_humanins(root)
    return root, out, tok


def _steps_present(run):
    """Step numbers of every visible checkpoint folder, after checking that each one is complete and loads."""
    root = os.path.join(run, "checkpoints")
    steps, names = [], None
    for d in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        if d.startswith("."):           # .step_N.tmp (an interrupted write) / .step_N.old: never used
            continue
        m = re.fullmatch(r"step_(\d{8})", d)
        assert m, f"unexpected entry {d} in {root}"
        path = os.path.join(root, d)
        with open(os.path.join(path, "state.json"), encoding="utf-8") as f:
            state = json.load(f)
        assert state["step"] == int(m.group(1))
        params = ms.load_checkpoint(os.path.join(path, "model.ckpt"))
        shapes = {k: tuple(v.shape) for k, v in params.items()}
        assert names is None or shapes == names, f"{path}: other parameters than its siblings"
        names = shapes
        assert "train:" in open(os.path.join(path, "config.yaml"), encoding="utf-8").read()
        steps.append(state["step"])
    return steps


def _check_invariants(run, last_seen):
    steps = _steps_present(run)
    if not steps:
        assert last_seen == 0
        return 0
    newest = steps[-1]
    assert newest >= last_seen, f"checkpoint step {last_seen} was lost: now {steps}"
    assert steps == list(range(steps[0], newest + 1)), f"a checkpoint is missing: {steps}"
    # keep_last are kept; one more may survive a kill between writing the newest and pruning the oldest
    assert min(KEEP_LAST, newest) <= len(steps) <= KEEP_LAST + 1, steps
    assert latest_checkpoint(run) == os.path.join(run, "checkpoints", f"step_{newest:08d}")
    return newest


def _start(script, args, log, slow):
    env = {**os.environ, "GLOG_v": "3", "PYTHONUNBUFFERED": "1", "FAULT_SLOW": str(slow)}
    return subprocess.Popen([sys.executable, str(script), *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=REPO, start_new_session=True)


def _wait_for(cond, proc, what, timeout=300):
    deadline = time.time() + timeout
    while not cond():
        assert proc.poll() is None, f"the run ended (code {proc.returncode}) before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _kill(proc):
    os.killpg(proc.pid, signal.SIGKILL)     # the run and any data workers it started
    proc.wait()


def test_sigkill_at_random_points_then_resume(toy, tmp_path):
    root, out, tok = toy
    run = str(tmp_path / "run")
    flags = tmp_path / "flags"
    script = tmp_path / "train_wrapper.py"
    script.write_text(WRAPPER.format(repo=REPO, flags=str(flags), train=os.path.join(REPO, "tools", "train.py")))
    # one task: one input shape, so each run compiles its graph once
    over = toy_overrides(root, out, tok, steps=MAX_STEPS, extra=[
        f"data.train_path={os.path.join(out, 'toy_expr')}", f"train.output_dir={run}", "train.save_steps=1",
        f"train.keep_last={KEEP_LAST}"])
    base = ["--config", os.path.join(REPO, "configs", "tiny_cpu.yaml"), "--set", *over]
    rng = random.Random(20240605)
    last = 0
    # where each run is killed: inside the write of a checkpoint, inside the pruning of an old one (the first
    # prune of the run), or at a random moment of a training step after a checkpoint
    plan = [("save", rng.choice([2, 3])), ("prune", None), ("step", rng.choice([1, 2]))]
    for i, (where, ahead) in enumerate(plan):
        shutil.rmtree(flags, ignore_errors=True)
        flags.mkdir()
        log_path = tmp_path / f"run{i}.log"
        with open(log_path, "w") as log:
            proc = _start(script, base + (["--resume", run] if last else []), log, SLOW if where != "step" else 0)
            if where == "save":     # before, during or after model.ckpt, or at the rename
                _wait_for((flags / f"save_{last + ahead}").exists, proc, f"checkpoint {last + ahead} was started")
                time.sleep(rng.uniform(0, 2 * SLOW))
            elif where == "prune":  # between two files of the folder being deleted
                _wait_for(lambda: any(f.startswith("prune_") for f in os.listdir(flags)), proc, "a prune")
                time.sleep(rng.uniform(0, SLOW / 2))
            else:
                target = os.path.join(run, "checkpoints", f"step_{last + ahead:08d}")
                _wait_for(lambda: latest_checkpoint(run) == target, proc, f"checkpoint {last + ahead}")
                time.sleep(rng.uniform(0, 0.5))
            assert proc.poll() is None, "the run finished before it could be killed"
            _kill(proc)
        text = log_path.read_text()
        if last:
            assert f"resumed from {os.path.join(run, 'checkpoints', f'step_{last:08d}')} at step {last}" in text, \
                text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        last = _check_invariants(run, last)
        assert last >= 1
    log_path = tmp_path / "final.log"
    with open(log_path, "w") as log:
        proc = _start(script, base + ["--resume", run], log, 0)
        assert proc.wait(timeout=600) == 0, log_path.read_text()[-3000:]
    text = log_path.read_text()
    assert f"resumed from {os.path.join(run, 'checkpoints', f'step_{last:08d}')} at step {last}" in text
    assert f"done: {{'step': {MAX_STEPS}" in text, text[-3000:]
    assert _check_invariants(run, last) == MAX_STEPS
    assert [d for d in os.listdir(os.path.join(run, "checkpoints")) if d.startswith(".")] == []
    steps = [json.loads(l)["step"] for l in open(os.path.join(run, "metrics.jsonl"))]
    assert steps[-1] == MAX_STEPS and set(steps) == set(range(1, MAX_STEPS + 1))
