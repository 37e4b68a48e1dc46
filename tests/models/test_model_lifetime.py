"""The first mindformers model of a process is freed when dropped, and a process that trained exits cleanly.

In a new process, since it happens only on the first model of a process: nltk's stored ImportError kept the
building stack alive (``lman_ms.models.llm._release_nltk_import_error``); this test fails without that fix. The
clean exit is a smoke check: the tracebacks the demo printed at exit (cells with a custom ``bprop`` that MindSpore
held until interpreter exit) did not show in a process this small even with the old code, so
``tests/models/test_layer_norm_kernel.py`` checks their cause instead (no norm holds a cell with a ``bprop``).
"""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent("""
    import gc, weakref
    import numpy as np
    import mindspore as ms
    from lman_ms.config import LLMConfig
    from lman_ms.models.layers import LayerNorm
    from lman_ms.models.llm import VicunaDecoder

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")

    def build():
        cfg = LLMConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                        vocab_size=64, max_position_embeddings=16)
        return weakref.ref(VicunaDecoder(cfg))

    ref = build()
    gc.collect()
    print("decoder freed:", ref() is None)

    norm = LayerNorm(8)
    norm.set_train(True)
    assert norm.fused is not None, "LayerNorm kernels unavailable"

    def loss(x):
        return norm(x).sum()

    grad = ms.jit(ms.grad(loss))
    print("grad:", grad(ms.Tensor(np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32))).shape)
""")


def test_first_decoder_is_freed_and_exit_is_clean(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = tmp_path / "lifetime.py"     # GRAPH_MODE compiles from source files, not from -c
    script.write_text(SCRIPT)
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "decoder freed: True" in run.stdout, run.stdout
    assert "grad: (4, 8)" in run.stdout, run.stdout
    assert "Exception ignored" not in run.stderr, run.stderr[-3000:]
