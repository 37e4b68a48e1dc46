"""What a user imports: the names of the package's front door, and a light ``import lman_ms``."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_top_level_names():
    import lman_ms
    from lman_ms import LMan, LManConfig, LManPredictor, load_config
    from lman_ms.config import LManConfig as config_class, load_config as loader
    from lman_ms.infer.predictor import LManPredictor as predictor
    from lman_ms.models.lman import LMan as model

    assert (LMan, LManConfig, LManPredictor, load_config) == (model, config_class, predictor, loader)
    assert {"LMan", "LManConfig", "LManPredictor", "load_config"} <= set(dir(lman_ms))


def test_models_names():
    from lman_ms.models import CLIPTextEncoder, CLIPVisionEncoder, LMan, QueryAdapter, VicunaDecoder
    from lman_ms.models import adapter, llm, lman, text, vision

    assert (CLIPVisionEncoder, CLIPTextEncoder, QueryAdapter, VicunaDecoder, LMan) == (
        vision.CLIPVisionEncoder, text.CLIPTextEncoder, adapter.QueryAdapter, llm.VicunaDecoder, lman.LMan)


def test_unknown_names_raise_attribute_error():
    import lman_ms
    import lman_ms.models
    for module in (lman_ms, lman_ms.models):
        with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
            getattr(module, "NoSuchName")


def test_config_import_does_not_import_mindspore():
    """Config-only tools stay light: a new process imports the package and its config, MindSpore stays out."""
    code = ("import sys, lman_ms, lman_ms.config; cfg = lman_ms.load_config('configs/tiny_cpu.yaml'); "
            "print(sorted(m for m in ('mindspore', 'mindformers', 'mindcv') if m in sys.modules), cfg.llm.vocab_size)")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split("\n")[0] == "[] 512"
