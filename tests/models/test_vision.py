"""CLIPVisionEncoder (eq. 1) against HF ``CLIPVisionModel`` hidden states, at the trained and at other sizes."""
import mindspore as ms
import numpy as np
import pytest
import torch

from lman_ms.config import VisionConfig
from lman_ms.models.vision import CLIPVisionEncoder, bicubic_matrix
from tests.convert.hf_fixtures import tiny_clip_model

TOL = 1e-4


def _hf_states(model, pixels):
    vision = getattr(model, "vision_model", model)
    with torch.no_grad():
        out = vision(torch.from_numpy(pixels), output_hidden_states=True, interpolate_pos_encoding=True)
    return [h.numpy() for h in out.hidden_states]


def _max_diff(ours, ref):
    assert len(ours) == len(ref)
    return max(float(np.abs(a.asnumpy() - b).max()) for a, b in zip(ours, ref))


@pytest.fixture(scope="module")
def clip_full(tmp_path_factory):
    return tiny_clip_model(tmp_path_factory.mktemp("vision"), "full")


def _pixels(h, w, batch=2, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 3, h, w)).astype(np.float32)


@pytest.mark.parametrize("size", [(30, 30), (44, 44), (36, 50), (23, 31)],
                         ids=["trained", "larger", "non_square", "odd_pixels"])
def test_hidden_states_match_hf_pynative(clip_full, size):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    folder, model = clip_full
    encoder = CLIPVisionEncoder.from_hf(folder)
    x = _pixels(*size)
    states = encoder(ms.Tensor(x))
    assert len(states) == 3 + 1
    assert states[0].shape == (2, 1 + (size[0] // 6) * (size[1] // 6), 24)
    assert _max_diff(states, _hf_states(model, x)) <= TOL


def test_hidden_states_match_hf_graph(clip_full):
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        folder, model = clip_full
        encoder = CLIPVisionEncoder.from_hf(folder)
        for size in ((30, 30), (36, 50)):  # trained grid, then a resampled non-square grid (second compile)
            x = _pixels(*size, seed=1)
            assert _max_diff(encoder(ms.Tensor(x)), _hf_states(model, x)) <= TOL
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)


def test_clip_l_patch14_resolutions(tmp_path):
    """The paper's patch 14 at 224 (trained), 336 and 448 (resampled position embeddings)."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    folder, model = tiny_clip_model(tmp_path, "vision", image_size=224, patch_size=14, num_hidden_layers=1)
    encoder = CLIPVisionEncoder.from_hf(folder)
    assert encoder.config.image_size == 224 and encoder.config.patch_size == 14
    for side in (224, 336, 448):
        x = _pixels(side, side, batch=1, seed=side)
        states = encoder(ms.Tensor(x))
        assert states[-1].shape == (1, 1 + (side // 14) ** 2, 24)
        assert _max_diff(states, _hf_states(model, x)) <= TOL


def test_bicubic_matrix_hand_computed():
    # 2 -> 4 samples: output 0 reads source -0.25 (t = 0.75); taps at -2, -1, 0, 1 clamp to 0, 0, 0, 1 with Keys
    # weights (a = -0.75) -0.03515625, 0.26171875, 0.87890625, -0.10546875.
    m = bicubic_matrix(2, 4).asnumpy()
    assert np.allclose(m[0], [1.10546875, -0.10546875], atol=1e-7)
    assert np.allclose(m[3], [-0.10546875, 1.10546875], atol=1e-7)  # mirror image
    assert np.allclose(m.sum(axis=1), 1.0, atol=1e-6)  # the kernel's weights sum to one
    assert np.array_equal(bicubic_matrix(5, 5).asnumpy(), np.eye(5, dtype=np.float32))


@pytest.mark.parametrize("src,dst", [(5, 7), (7, 3), (16, 24)])
def test_bicubic_matrix_equals_torch(src, dst):
    grid = torch.randn(1, 1, src, src, generator=torch.Generator().manual_seed(src))
    ref = torch.nn.functional.interpolate(grid, size=(dst, dst), mode="bicubic", align_corners=False)[0, 0]
    m = bicubic_matrix(src, dst).asnumpy()
    assert np.abs(m @ grid[0, 0].numpy() @ m.T - ref.numpy()).max() < 1e-5


def test_any_intermediate_size_and_gelu():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = VisionConfig(hidden_size=24, intermediate_size=37, num_hidden_layers=1, num_attention_heads=3,
                       image_size=12, patch_size=6, hidden_act="gelu")
    enc = CLIPVisionEncoder(cfg)
    assert tuple(enc.blocks[0].mlp.fc1.weight.shape) == (37, 24)
    assert [s.shape for s in enc(ms.Tensor(_pixels(12, 12, batch=1)))] == [(1, 5, 24)] * 2


def test_sincos_position_embeddings_say_where_a_token_is():
    """The from-scratch init: each patch row encodes its column and row (MAE's 2-D sin-cos; the class token 0), so
    a token's content, not only its index, carries its place: a linear read-out recovers (x, y) exactly."""
    from lman_ms.models.vision import sincos_position_embedding
    grid, dim = 8, 96
    pe = sincos_position_embedding(dim, grid)
    assert pe.shape == (1 + grid * grid, dim) and not pe[0].any() and np.abs(pe).max() <= 1.0
    ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    where = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    a = np.c_[pe[1:], np.ones(grid * grid)]
    coef, *_ = np.linalg.lstsq(a, where, rcond=None)
    np.testing.assert_allclose(a @ coef, where, atol=1e-6)
    # the column half does not depend on the row and vice versa
    np.testing.assert_array_equal(pe[1:1 + grid, : dim // 2], pe[1 + grid:1 + 2 * grid, : dim // 2])
    np.testing.assert_array_equal(pe[1::grid, dim // 2:], pe[2::grid, dim // 2:])
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_position_embedding(30, grid)


def test_vision_encoder_starts_from_the_configured_position_embeddings():
    from lman_ms.config import ConfigError, LManConfig
    from lman_ms.models.vision import sincos_position_embedding
    cfg = VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       image_size=32, patch_size=8, position_embedding_init="sincos")
    enc = CLIPVisionEncoder(cfg)
    np.testing.assert_array_equal(enc.pos_embed.asnumpy()[0], sincos_position_embedding(32, 4))
    normal = CLIPVisionEncoder(VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, image_size=32, patch_size=8))
    assert np.abs(normal.pos_embed.asnumpy()).max() < 0.2         # the small random init otherwise
    with pytest.raises(ConfigError, match="position_embedding_init"):
        LManConfig.from_dict({"vision": {"position_embedding_init": "learned"}})
    with pytest.raises(ConfigError, match="divisible by 4"):
        LManConfig.from_dict({"vision": {"position_embedding_init": "sincos", "hidden_size": 66,
                                         "num_attention_heads": 6}})
