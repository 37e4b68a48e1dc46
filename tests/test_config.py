import pytest

from lman_ms.config import ConfigError, LManConfig, load_config


def test_tiny_and_7b_load_and_derive():
    tiny = load_config("configs/tiny_cpu.yaml")
    assert tiny.adapter.encoder_hidden_size == tiny.vision.hidden_size
    assert tiny.loss.embed_dim == tiny.text.projection_dim
    big = load_config("configs/lman_7b.yaml")
    assert (big.vision.num_hidden_layers, big.vision.hidden_size, big.vision.patch_size) == (24, 1024, 14)
    assert (big.adapter.num_hidden_layers, big.adapter.num_query_tokens) == (12, 128)
    assert (big.llm.num_hidden_layers, big.llm.hidden_size, big.llm.intermediate_size) == (32, 4096, 11008)


def test_unknown_key_names_its_path(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("adapter:\n  num_query_tokn: 3\n")
    with pytest.raises(ConfigError, match=r"adapter\.num_query_tokn"):
        LManConfig.from_yaml(str(p))
    with pytest.raises(ConfigError, match="visionn"):
        LManConfig.from_dict({"visionn": {}})


def test_wrong_type_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match=r"llm\.hidden_size must be int"):
        LManConfig.from_dict({"llm": {"hidden_size": "big"}})
    cfg = load_config("configs/tiny_cpu.yaml", ["adapter.multi_grained=false", "train.learning_rate=2e-4"])
    assert cfg.adapter.multi_grained is False and cfg.train.learning_rate == 2e-4


def test_save_round_trip(tmp_path):
    cfg = load_config("configs/tiny_cpu.yaml")
    cfg.save(str(tmp_path / "c.yaml"))
    again = LManConfig.from_yaml(str(tmp_path / "c.yaml"))
    assert again.to_dict() == cfg.to_dict()
