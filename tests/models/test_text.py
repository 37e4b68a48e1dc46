"""CLIPTextEncoder against HF ``CLIPTextModelWithProjection`` (last hidden state and text embeddings)."""
import json
import os

import mindspore as ms
import numpy as np
import pytest
import torch

from lman_ms.config import TextConfig
from lman_ms.models.text import CLIPTextEncoder
from tests.convert.hf_fixtures import TEXT, tiny_clip_model

TOL = 1e-4
EOS = TEXT["eos_token_id"]  # 98; pad is the same id, as in OpenAI CLIP
IDS = np.array([[97, 5, 7, 11, EOS, EOS, EOS], [97, 9, EOS, EOS, EOS, EOS, EOS], [97, 3, 4, 5, 6, 8, EOS]],
               np.int32)
MASK = (IDS != EOS).astype(np.int32)
MASK[np.arange(3), (IDS == EOS).argmax(1)] = 1  # the first EOS is a real token


def _hf(model, ids, mask=None):
    kwargs = {} if mask is None else {"attention_mask": torch.from_numpy(mask).long()}
    with torch.no_grad():
        out = model(torch.from_numpy(ids).long(), **kwargs)
    return out.last_hidden_state.numpy(), out.text_embeds.numpy()


def _diff(ours, ref):
    return max(float(np.abs(a.asnumpy() - b).max()) for a, b in zip(ours, ref))


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    return tiny_clip_model(tmp_path_factory.mktemp("text"), "text")


@pytest.mark.parametrize("with_mask", [False, True], ids=["causal_only", "padding_mask"])
def test_matches_hf_pynative(text_model, with_mask):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    folder, model = text_model
    enc = CLIPTextEncoder.from_hf(folder)
    mask = MASK if with_mask else None
    ours = enc(ms.Tensor(IDS), None if mask is None else ms.Tensor(mask))
    assert ours[0].shape == (3, 7, 24) and ours[1].shape == (3, 20)
    assert _diff(ours, _hf(model, IDS, mask)) <= TOL


def test_matches_hf_graph(text_model):
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        folder, model = text_model
        enc = CLIPTextEncoder.from_hf(folder)
        assert _diff(enc(ms.Tensor(IDS), ms.Tensor(MASK)), _hf(model, IDS, MASK)) <= TOL
        assert _diff(enc(ms.Tensor(IDS[:, :5])), _hf(model, IDS[:, :5])) <= TOL  # no mask, shorter: recompiles
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)


def test_full_clip_folder(tmp_path):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    folder, model = tiny_clip_model(tmp_path, "full", seed=3)
    enc = CLIPTextEncoder.from_hf(folder)
    with torch.no_grad():
        ref = model.get_text_features(torch.from_numpy(IDS).long())
    assert np.abs(enc(ms.Tensor(IDS))[1].asnumpy() - ref.numpy()).max() <= TOL


def test_legacy_eos_token_id_pools_at_largest_id(tmp_path):
    """Configs saved before transformers PR #24773 carry eos_token_id 2: HF then pools at argmax(input_ids)."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    folder, model = tiny_clip_model(tmp_path, "text", eos_token_id=2)
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["eos_token_id"] == 2
    enc = CLIPTextEncoder.from_hf(folder)
    ids = np.array([[97, 5, 98, 0, 0], [40, 41, 42, 98, 98]], np.int32)  # EOT (98) is the largest id
    assert enc.pooling_index(ms.Tensor(ids)).asnumpy().tolist() == [2, 3]
    assert _diff(enc(ms.Tensor(ids)), _hf(model, ids)) <= TOL


def test_pooling_index_is_first_eos_or_zero():
    enc = CLIPTextEncoder(TextConfig(vocab_size=20, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, max_position_embeddings=6, projection_dim=4,
                                     eos_token_id=9))
    ids = np.array([[1, 9, 9, 9], [1, 2, 3, 9], [1, 2, 3, 4]], np.int32)
    assert enc.pooling_index(ms.Tensor(ids)).asnumpy().tolist() == [1, 3, 0]  # no EOS: 0, like torch argmax


def test_too_long_input_is_an_error(text_model):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    enc = CLIPTextEncoder.from_hf(text_model[0])
    with pytest.raises(ValueError, match="17 tokens exceed max_position_embeddings"):
        enc(ms.Tensor(np.ones((1, 17), np.int32)))


def test_parameter_names_are_hf_names(text_model):
    folder, model = text_model
    hf_names = {k.replace("text_model.", "", 1) for k in model.state_dict() if not k.endswith("position_ids")}
    ours = {n for n, _ in CLIPTextEncoder.from_hf(folder).parameters_and_names()}
    assert ours == hf_names
