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


def _leaf_keys(cls, prefix=""):
    """(dotted path, field name) of every leaf key of a config dataclass, nested sections and data.tasks included."""
    import dataclasses
    import typing
    from lman_ms.config import DataConfig, TaskDataConfig
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _leaf_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f.name
    if cls is DataConfig:
        yield from _leaf_keys(TaskDataConfig, f"{prefix}tasks.<task>.")


def test_every_config_key_is_read_by_code():
    """A key that is accepted but read nowhere is silently ignored: every leaf of LManConfig must be read as an
    attribute (``.name``) somewhere in lman_ms/ or tools/ outside config.py, which only declares and checks them."""
    import os
    import re
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sources = []
    for top in ("lman_ms", "tools"):
        for folder, _, files in os.walk(os.path.join(root, top)):
            sources += [os.path.join(folder, f) for f in files if f.endswith(".py")]
    config_py = os.path.join(root, "lman_ms", "config.py")
    text = "\n".join(open(p, encoding="utf-8").read() for p in sources if os.path.abspath(p) != config_py)
    keys = list(_leaf_keys(LManConfig))
    paths = {p for p, _ in keys}
    # the walk reaches the nested sections the brief names, so an unread LoRA or per-task key is caught too
    assert {"train.lora.dropout", "data.tasks.<task>.batch_size", "parallel.recompute", "data.eval_path"} <= paths
    unread = [p for p, name in keys if not re.search(rf"\.{re.escape(name)}\b", text)]
    assert unread == [], f"config keys accepted but read by no code: {unread}"


def test_eval_keys_are_checked():
    with pytest.raises(ConfigError, match="train.eval_steps=5 needs data.eval_path"):
        load_config("configs/tiny_cpu.yaml", ["train.eval_steps=5"])
    with pytest.raises(ConfigError, match="eval_max_batches"):
        load_config("configs/tiny_cpu.yaml", ["train.eval_max_batches=0"])
    cfg = load_config("configs/tiny_cpu.yaml", ["train.eval_steps=5", "data.eval_path=somewhere"])
    assert (cfg.train.eval_steps, cfg.train.eval_max_batches) == (5, 8)
