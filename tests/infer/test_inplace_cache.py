"""The in-place KV cache (Parameter buffers written at one slot per step) and the fused CPU decode kernels: same
greedy tokens as recomputing the whole sequence, logits within 1e-5, buffers reused across generate() calls."""
import os
import shutil

import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor

from lman_ms.convert.llama import llama_config_from_hf, load_llama_state
from lman_ms.infer.decode_kernels import load_decode_kernels
from lman_ms.infer.fused_decode import FusedDecodeCell
from lman_ms.infer.generate import Generator
from lman_ms.infer.inplace_cache import InplaceDecodeCell
from lman_ms.models.llm import VicunaDecoder
from tests.convert.hf_fixtures import LLAMA, tiny_llama_model

# Without a C++ compiler the generator falls back to the in-place cells (tested below); the kernels are not built.
needs_compiler = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                                    reason="no C++ compiler: the fused decode kernels are not built")

HIDDEN = LLAMA["hidden_size"]
PROMPTS = [[5, 9, 11, 3, 7, 40, 8], [20, 21, 33]]   # different lengths: the second is left-padded
TOL = 1e-5


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
    """A tiny GQA LLaMA (6 heads, 3 key/value heads, head dim 4: widths that are not multiples of the kernel's
    16-wide vectors) in GRAPH_MODE."""
    folder, _ = tiny_llama_model(tmp_path_factory.mktemp("inplace"), num_attention_heads=6, num_key_value_heads=3,
                                 max_position_embeddings=32)
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    dec = VicunaDecoder(llama_config_from_hf(folder))
    dec.set_train(False)
    dec.load_state(load_llama_state(folder), source=folder)
    return dec


@pytest.fixture(scope="module")
def generators(decoder):
    """The in-place cache on the fused kernels (default) and on mindformers' cells, and the functional cache."""
    return {"fused": Generator(decoder, max_cache_len=32, prefill_bucket=16),
            "mindformers": Generator(decoder, max_cache_len=32, prefill_bucket=16, cpu_kernels=False),
            "functional": Generator(decoder, max_cache_len=32, prefill_bucket=16, inplace_cache=False)}


def _same(out, ref):
    assert out.sequences == ref.sequences
    assert len(out.scores) == len(ref.scores)
    assert max(float(np.abs(a - b).max()) for a, b in zip(out.scores, ref.scores)) <= TOL


@needs_compiler
def test_decode_cell_kinds(generators):
    """The default path really runs the fused kernels (the compiler is there); cpu_kernels=False does not."""
    assert load_decode_kernels() is not None
    decode = {k: generators[k]._inplace_cells(2)[1] for k in ("fused", "mindformers")}
    assert type(decode["fused"]) is FusedDecodeCell and type(decode["mindformers"]) is InplaceDecodeCell


@pytest.mark.parametrize("kind", ["fused", "mindformers", "functional"])
def test_batch_of_different_lengths_equals_recompute(generators, kind):
    ref = generators["fused"].generate(PROMPTS, max_new_tokens=10, backend="recompute", output_scores=True)
    _same(generators[kind].generate(PROMPTS, max_new_tokens=10, output_scores=True), ref)


def test_buffers_reused_across_generate_calls(generators):
    """A long generation leaves keys in every slot; later, shorter requests must not see them (masked, not
    cleared), and a repeated request gives the same tokens."""
    gen = generators["fused"]
    cells = gen._inplace_cells(2)
    filled = gen.generate(PROMPTS, max_new_tokens=17, output_scores=True)   # slots 0..31 all written
    _same(filled, gen.generate(PROMPTS, max_new_tokens=17, backend="recompute", output_scores=True))
    other = [[7, 7, 30, 2, 9], [12]]
    _same(gen.generate(other, max_new_tokens=6, output_scores=True),
          gen.generate(other, max_new_tokens=6, backend="recompute", output_scores=True))
    again = gen.generate(PROMPTS, max_new_tokens=17, output_scores=True)
    assert again.sequences == filled.sequences
    # one buffer set per batch size, reused by every call
    assert gen._inplace_cells(2) is cells


def test_prefix_embeddings_and_single_sequence(generators):
    gen = generators["fused"]
    prefix = np.random.default_rng(1).standard_normal((2, 5, HIDDEN)).astype(np.float32) * 0.5
    _same(gen.generate(PROMPTS, prefix_embeds=prefix, max_new_tokens=6, output_scores=True),
          gen.generate(PROMPTS, prefix_embeds=prefix, max_new_tokens=6, backend="recompute", output_scores=True))
    _same(gen.generate([PROMPTS[0]], max_new_tokens=5, output_scores=True),
          gen.generate([PROMPTS[0]], max_new_tokens=5, backend="recompute", output_scores=True))


def test_cells_use_the_decoder_parameters_plus_own_buffers(decoder, generators):
    prefill, decode = generators["fused"]._inplace_cells(2)
    own = {id(p) for p in decoder.get_parameters()}
    for cell in (prefill, decode):
        params = list(cell.get_parameters())
        extra = [p for p in params if id(p) not in own]
        assert {id(p) for p in params} - {id(p) for p in extra} == own
        # 2 layers x key/value buffers of (batch 2 x 3 kv heads x 32 slots, head dim 4), outside the decoder
        assert sorted(p.name for p in extra) == sorted(f"kv_cache.b2.{kind}.{i}" for kind in ("key", "value")
                                                      for i in range(2))
        assert all(p.shape == (2 * 3 * 32, 4) and not p.requires_grad for p in extra)
    assert not any(p.name.startswith("kv_cache") for p in decoder.get_parameters())


def _rms(x, g, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g


def _rope(y, cos, sin, d):
    """Rotate-half rotary embedding of each head of size d (numpy reference)."""
    heads = y.reshape(*y.shape[:-1], -1, d)
    half = d // 2
    rotated = np.concatenate([-heads[..., half:], heads[..., :half]], -1)
    return (heads * cos[..., None, :] + rotated * sin[..., None, :]).reshape(y.shape)


@needs_compiler
def test_projection_kernels_by_hand():
    kernels = load_decode_kernels()
    rng = np.random.default_rng(0)
    m, k, d = 3, 37, 4                                            # K = 37: vector body + scalar tail
    x = rng.standard_normal((m, 1, k)).astype(np.float32)
    g = rng.uniform(0.5, 1.5, k).astype(np.float32)
    eps = np.array([1e-5], np.float32)
    w, up = (rng.standard_normal((7, k)).astype(np.float32) for _ in range(2))   # N = 7: 4-row block + rest
    wq, wk, wv = (rng.standard_normal((n, k)).astype(np.float32) for n in (12, 8, 8))   # 3 and 2 heads of 4
    angles = rng.uniform(-3, 3, (m, d // 2)).astype(np.float32)
    cos, sin = (np.concatenate([f(angles)] * 2, -1) for f in (np.cos, np.sin))
    xn = _rms(x, g, eps[0])
    t = [Tensor(a) for a in (x, g, eps)]

    def close(got, expected):
        np.testing.assert_allclose(got.asnumpy(), expected, rtol=1e-5, atol=1e-5)

    close(kernels.gemv(t[0], Tensor(w)), x @ w.T)
    close(kernels.norm_gemv(*t, Tensor(w)), xn @ w.T)
    gate = xn @ w.T
    close(kernels.norm_gated_gemv(*t, Tensor(w), Tensor(up)), gate / (1 + np.exp(-gate)) * (xn @ up.T))
    q, key, v = kernels.norm_qkv_rope(*t, Tensor(wq), Tensor(wk), Tensor(wv), Tensor(cos), Tensor(sin))
    assert (q.shape, key.shape, v.shape) == ((m, 1, 12), (m, 1, 8), (m, 1, 8))
    close(q, _rope(xn @ wq.T, cos[:, None], sin[:, None], d))
    close(key, _rope(xn @ wk.T, cos[:, None], sin[:, None], d))
    close(v, xn @ wv.T)


@needs_compiler
@pytest.mark.parametrize("threads", ["1", "3"])
def test_products_do_not_depend_on_the_thread_count(monkeypatch, threads):
    """Large products are shared between threads by rows: each row is computed by the same code whoever runs it."""
    kernels = load_decode_kernels()
    rng = np.random.default_rng(3)
    x = Tensor(rng.standard_normal((2, 1, 512)).astype(np.float32))
    w, up = (Tensor(rng.standard_normal((1000, 512)).astype(np.float32)) for _ in range(2))
    g, eps = Tensor(np.ones(512, np.float32)), Tensor([1e-6], ms.float32)
    monkeypatch.setenv("LMAN_MS_KERNEL_THREADS", "1")
    single = [kernels.gemv(x, w).asnumpy(), kernels.norm_gated_gemv(x, g, eps, w, up).asnumpy()]
    monkeypatch.setenv("LMAN_MS_KERNEL_THREADS", threads)
    for _ in range(3):
        assert np.array_equal(kernels.gemv(x, w).asnumpy(), single[0])
        assert np.array_equal(kernels.norm_gated_gemv(x, g, eps, w, up).asnumpy(), single[1])


@needs_compiler
def test_attention_kernel_by_hand():
    """GQA (4 query heads on 2 key/value heads), two sequences with different left padding; the slots outside
    pad_count .. write_index hold NaN and must not be read."""
    attention = load_decode_kernels().attention
    rng = np.random.default_rng(2)
    b, h, kvh, slots, d, last = 2, 4, 2, 8, 4, 5
    pad = np.array([[1], [3]], np.int32)
    q = rng.standard_normal((b, 1, h * d)).astype(np.float32)
    keys, values = (rng.standard_normal((b, kvh, slots, d)).astype(np.float32) for _ in range(2))
    for cache in (keys, values):
        cache[0, :, :1] = cache[1, :, :3] = cache[:, :, last + 1:] = np.nan
    expected = np.zeros((b, h, d), np.float32)
    for s in range(b):
        for head in range(h):
            k, v = (c[s, head // 2, pad[s, 0]:last + 1] for c in (keys, values))
            scores = k @ q[s, 0, head * d:(head + 1) * d] / np.sqrt(d)
            p = np.exp(scores - scores.max())
            expected[s, head] = (p / p.sum()) @ v
    got = attention(Tensor(q), Tensor(keys.reshape(-1, d)), Tensor(values.reshape(-1, d)), Tensor(pad),
                    Tensor(last, ms.int32), Tensor([kvh, slots], ms.int32)).asnumpy()
    np.testing.assert_allclose(got, expected.reshape(b, 1, h * d), rtol=1e-5, atol=1e-6)


def test_without_kernels_falls_back_to_mindformers_cells(decoder, monkeypatch):
    monkeypatch.setenv("LMAN_MS_DECODE_KERNELS", "0")
    gen = Generator(decoder, max_cache_len=32, prefill_bucket=16)
    assert type(gen._inplace_cells(2)[1]) is InplaceDecodeCell
    assert gen.generate(PROMPTS, max_new_tokens=4).sequences == \
        gen.generate(PROMPTS, max_new_tokens=4, backend="recompute").sequences


def test_pynative(decoder):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        for kwargs in ({}, {"cpu_kernels": False}):
            gen = Generator(decoder, max_cache_len=32, prefill_bucket=4, **kwargs)
            _same(gen.generate(PROMPTS, max_new_tokens=4, output_scores=True),
                  gen.generate(PROMPTS, max_new_tokens=4, backend="recompute", output_scores=True))
            _same(gen.generate(PROMPTS[1:], max_new_tokens=3, output_scores=True),
                  gen.generate(PROMPTS[1:], max_new_tokens=3, backend="recompute", output_scores=True))
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)
