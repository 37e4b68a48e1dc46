"""The 8-card Ascend 910B stage configs load with the strict loader and say what the paper and the README say."""
import os

import pytest
import yaml

from lman_ms.config import ConfigError, LManConfig, load_config
from lman_ms.models.lora import lora_parameter_count
from lman_ms.train.parallel import validate_parallel

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HUMANINS_TASKS = {"action_recognition", "pedestrian_detection", "pedestrian_attribute", "expression_recognition",
                  "face_detection", "pose_estimation"}


@pytest.fixture(scope="module")
def stages():
    return (load_config(os.path.join(REPO, "configs/lman_7b_stage1_pretrain.yaml")),
            load_config(os.path.join(REPO, "configs/lman_7b_stage2_finetune.yaml")))


def test_both_stages_share_the_paper_architecture(stages):
    paper = load_config(os.path.join(REPO, "configs/lman_7b.yaml"))
    for cfg in stages:
        assert cfg.vision == paper.vision and cfg.text == paper.text
        assert cfg.adapter.num_query_tokens == 128 and cfg.adapter.num_hidden_layers == 12
        assert cfg.adapter.multi_grained and cfg.adapter.instruction_aware
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            assert getattr(cfg.llm, key) == getattr(paper.llm, key), key
        assert cfg.llm.compute_dtype == "bfloat16"
        assert cfg.context.device_target == "Ascend" and cfg.context.mode == "GRAPH_MODE"
        # a resolved copy (saved beside every checkpoint) reloads to the same config
        assert LManConfig.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg


def test_eight_card_data_parallel(stages):
    for cfg in stages:
        p = cfg.parallel
        assert (p.data_parallel, p.model_parallel, p.pipeline_stage) == (8, 1, 1)
        validate_parallel(cfg, 8)
        with pytest.raises(ConfigError, match="but 4 worker"):
            validate_parallel(cfg, 4)
        for task, t in cfg.data.tasks.items():
            assert t.batch_size % p.data_parallel == 0, task
            assert t.image_size % cfg.vision.patch_size == 0, task
        assert 0 < cfg.train.warmup_steps < cfg.train.max_steps


def test_stage1_trains_the_adapter_on_captions(stages):
    s1, _ = stages
    assert s1.train.stage == 1
    assert s1.loss.lic and s1.loss.vmlm and s1.loss.vmlm_weight == 1.0
    assert set(s1.data.tasks) == {"caption"}
    assert s1.data.tasks["caption"].batch_size == s1.train.global_batch_size == 1024
    assert s1.train.freeze_vision is None and not s1.train.freeze_adapter     # frozen ViT by stage, adapter trains
    assert s1.train.vision_init and s1.train.text_init and s1.adapter.init_from_text


def test_stage2_is_multi_resolution_lora_on_humanins(stages):
    s1, s2 = stages
    assert s2.train.stage == 2
    assert set(s2.data.tasks) == HUMANINS_TASKS
    sizes = {t: v.image_size for t, v in s2.data.tasks.items()}
    assert sizes["action_recognition"] == sizes["pedestrian_attribute"] == sizes["expression_recognition"] == 224
    assert sizes["pose_estimation"] == 336 and sizes["face_detection"] == sizes["pedestrian_detection"] == 448
    # equal ViT tokens per card across resolutions: batch x (1 + (S / 14)^2) within 15% of each other
    per_card = [v.batch_size // 8 * (1 + (v.image_size // 14) ** 2) for v in s2.data.tasks.values()]
    assert max(per_card) <= 1.15 * min(per_card)
    t = s2.train
    assert t.freeze_vision is False and not t.freeze_adapter and t.freeze_llm and t.trainable_llm_layers == 0
    assert t.lora.rank == 64 and t.lora.alpha == 128.0
    assert set(t.lora.target_modules) == {"wq", "wk", "wv", "wo", "w1", "w2", "w3"}
    # 32 layers x r (64) x (4 x (4096 + 4096) + 3 x (4096 + 11008)), by hand
    assert lora_parameter_count(s2.llm, t.lora) == 32 * 64 * (4 * 8192 + 3 * 15104) == 159_907_840
    # the adapter starts from stage 1's last checkpoint
    assert t.init_checkpoint == f"{s1.train.output_dir}/checkpoints/step_{s1.train.max_steps:08d}"
    # room for the ~40-token Vicuna v1.1 prefix beside the visual tokens and the longest text bucket
    assert s2.llm.max_position_embeddings - s2.adapter.num_query_tokens - t.max_text_length >= 64
    assert t.max_text_length % 32 == 0
