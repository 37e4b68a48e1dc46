"""The parallel section: data parallel is the only layout; every other setting is refused with the reason, never
passed on and ignored."""
import os

import pytest

from lman_ms.config import ConfigError, load_config
from lman_ms.train.parallel import validate_parallel

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cfg(*overrides):
    return load_config(os.path.join(REPO, "configs/lman_7b_stage2_finetune.yaml"), list(overrides))


@pytest.mark.parametrize("override, world, message", [
    ("parallel.model_parallel=2", 16, r"model_parallel=2 is not supported: .*no shard strategies.*use data_parallel"),
    ("parallel.pipeline_stage=2", 16, r"pipeline_stage=2 is not supported: .*pipeline stages.*recompute and LoRA"),
    ("parallel.micro_batch_num=4", 8, r"micro_batch_num=4: .*pipeline.*gradient_accumulation_steps"),
    ("parallel.enable_parallel_optimizer=true", 8, r"enable_parallel_optimizer=true is not supported: .*AdamW"),
    ("parallel.data_parallel=4", 8, r"data_parallel=4, but 8 worker\(s\)"),
])
def test_refused_with_the_reason(override, world, message):
    with pytest.raises(ConfigError, match=message):
        validate_parallel(_cfg(override), world)


def test_data_parallel_on_any_device():
    validate_parallel(_cfg(), 8)
    validate_parallel(_cfg("parallel.data_parallel=2", "context.device_target=CPU"), 2)
