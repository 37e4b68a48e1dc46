"""Child processes of the benchmarks, so that a measurement sees only its own work (not the benchmark process's
loaded frameworks and models). Each command prints one JSON line.

    python -m benchmarks.child convert HF_DIR OUTPUT.ckpt DTYPE   # convert_llama_to_ms
    python -m benchmarks.child imports                            # the converter's imports only
    python -m benchmarks.child humanins SYNTH_DIR OUT_DIR WORKERS # build_synth_humanins
    python -m benchmarks.child matmul LIBRARY N REPEAT            # fp32 matmul GFLOP/s
    python -m benchmarks.child launch COMMAND ...                 # run COMMAND, report its rusage

Why ``launch``: Linux keeps the resident high-water mark across ``exec`` (the forking process's memory counts in
the child's ``ru_maxrss``), so a child started straight from the benchmark process would report at least that
process's size. ``launch`` is a fresh, small interpreter that starts the measured command and reaps it with
``os.wait4``: the rusage it prints is the command's own peak (plus this launcher's few MiB at most).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def _vm_hwm_kib() -> int:
    """Peak resident set of this process image (Linux ``VmHWM``), a cross-check of ``ru_maxrss``; -1 elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def _launch(command) -> int:
    proc = subprocess.Popen([sys.executable, "-m", __spec__.name, *command])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    print(json.dumps({"launched": command[0], "exit": proc.returncode, "ru_maxrss_kib": usage.ru_maxrss}),
          flush=True)
    return proc.returncode


def _convert(hf_dir: str, output: str, dtype: str) -> dict:
    import mindspore  # noqa: F401 - imported lazily by the writer: kept out of the timed conversion
    from lman_ms.convert.llama import convert_llama_to_ms
    t0 = time.perf_counter()
    info = convert_llama_to_ms(hf_dir, output, dtype=dtype, progress=False)
    return {"seconds": time.perf_counter() - t0, **info}


def _imports() -> dict:
    from lman_ms.convert.llama import convert_llama_to_ms  # noqa: F401
    import mindspore  # noqa: F401 - the converter imports it when writing; the baseline must hold it too
    return {"seconds": 0.0}


def _humanins(synth_dir: str, out_dir: str, workers: str) -> dict:
    from lman_ms.data.synth import build_synth_humanins
    t0 = time.perf_counter()
    summaries, missing = build_synth_humanins(synth_dir, out_dir, workers=int(workers), seed=0)
    return {"wall_seconds": time.perf_counter() - t0, "missing": missing,
            "builds": [{"dataset": s.dataset, "split": s.split, "records": s.records, "images": s.images,
                        "seconds": s.seconds} for s in summaries]}


# ---- parent side ---------------------------------------------------------------------------------------------------
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_child(args, cwd: str, launch: bool = False, threads: int = 0) -> dict:
    """Run a command of this module in a fresh interpreter (through ``launch`` when the caller needs its peak
    memory); returns its JSON result, with ``ru_maxrss_kib`` from ``launch`` and ``process_seconds`` (start-up
    included). Output goes to files, so nothing blocks on a full pipe; a failure raises with the child's stderr."""
    import tempfile

    from benchmarks.common import default_threads, thread_env

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (_REPO, os.environ.get("PYTHONPATH")) if p))
    env.update(thread_env(threads or default_threads()))
    cmd = [sys.executable, "-m", __spec__.name if __spec__ else "benchmarks.child"]
    cmd += (["launch"] if launch else []) + list(args)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        code = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=err).returncode
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code != 0:
        raise RuntimeError(f"benchmark child {list(args)} failed with exit status {code}: {stderr.strip()[-2000:]}")
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    result = next((r for r in records if "launched" not in r), None)
    if result is None:
        raise RuntimeError(f"benchmark child {list(args)} printed no JSON result: {stdout[-500:]}")
    launched = next((r for r in records if "launched" in r), {})
    if "ru_maxrss_kib" in launched:
        result["ru_maxrss_kib"] = launched["ru_maxrss_kib"]
    result["process_seconds"] = seconds
    return result


def _matmul(library: str, n: str, repeat: str) -> dict:
    from .common import set_mindspore_threads, set_torch_threads
    from .mfu import matmul_gflops
    if library in ("torch", "mindspore"):
        (set_torch_threads if library == "torch" else set_mindspore_threads)()
    return {"gflops": matmul_gflops(library, int(n), int(repeat))}


COMMANDS = {"convert": (_convert, 3), "imports": (_imports, 0), "humanins": (_humanins, 3), "matmul": (_matmul, 3)}


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "launch" and len(args) > 1:
        return _launch(args[1:])
    if not args or args[0] not in COMMANDS or len(args) - 1 != COMMANDS[args[0]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    fn, _ = COMMANDS[args[0]]
    result = fn(*args[1:])
    result["vm_hwm_kib"] = _vm_hwm_kib()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
