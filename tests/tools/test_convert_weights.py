"""tools/convert_weights.py: the command line, both directions, and its error exit."""
import importlib.util
import os
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest

from lman_ms.convert.common import iter_hf_tensors
from tests.convert.hf_fixtures import tiny_clip, tiny_llama_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "convert_weights.py")


def _tool():
    spec = importlib.util.spec_from_file_location("convert_weights", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_llama_command_line_both_ways(tmp_path):
    src, _ = tiny_llama_model(tmp_path, sharded=True, safetensors=False)
    ckpt = str(tmp_path / "llama.ckpt")
    # the real command, in a fresh interpreter, from another working directory
    done = subprocess.run([sys.executable, TOOL, "--model", "llama", "--input_path", src, "--output_path", ckpt,
                           "--dtype", "fp16", "--no_progress"], cwd=str(tmp_path), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "llama: wrote 21 tensors" in done.stdout and "fp16" in done.stdout and "peak RSS" in done.stdout
    assert ms.load_checkpoint(ckpt)["lm_head.weight"].dtype == ms.float16

    back = str(tmp_path / "back")
    assert _tool().main(["--model", "llama", "--reverse", "--input_path", ckpt, "--config_path", src,
                         "--output_path", back, "--dtype", "fp16"]) == 0
    a, b = dict(iter_hf_tensors(src, False)), dict(iter_hf_tensors(back, False))
    assert sorted(a) == sorted(b)
    assert all(b[k].dtype == np.float16 and np.array_equal(a[k].astype(np.float16), b[k]) for k in a)


def test_clip_round_trip_fp32(tmp_path, capsys):
    src = tiny_clip(tmp_path, "full")
    tool = _tool()
    ckpt = str(tmp_path / "clip.ckpt")
    assert tool.main(["--model", "clip", "--input_path", src, "--output_path", ckpt, "--no_progress"]) == 0
    assert "clip: wrote 82 tensors" in capsys.readouterr().out
    back = str(tmp_path / "back")
    assert tool.main(["--model", "clip", "--reverse", "--input_path", ckpt, "--config_path",
                      os.path.join(src, "config.json"), "--output_path", back]) == 0
    a, b = dict(iter_hf_tensors(src, False)), dict(iter_hf_tensors(back, False))
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_bad_input_exits_with_a_message(tmp_path, capsys):
    src = tiny_clip(tmp_path, "full")
    code = _tool().main(["--model", "llama", "--input_path", src, "--output_path", str(tmp_path / "x.ckpt")])
    assert code == 1
    assert "model_type 'clip' is not 'llama'" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x.ckpt")


def test_reverse_needs_a_config(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _tool().parse_args(["--model", "clip", "--reverse", "--input_path", "a.ckpt", "--output_path", "out"])
    assert exit_info.value.code == 2
    assert "--config_path" in capsys.readouterr().err
