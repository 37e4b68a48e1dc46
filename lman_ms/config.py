"""One composite configuration for L-Man, built from YAML.

Sections mirror the model and the run: ``vision`` (CLIP ViT), ``text`` (CLIP text transformer: the stage-1 text
encoder and the source of the adapter's initial weights), ``adapter`` (query adapter, eq. 2), ``llm`` (Vicuna /
LLaMA), ``loss`` (stage-1 objectives, eq. 3-7), ``train``, ``data``, ``parallel`` and ``context``.

Unknown keys are errors that name the key's full path (``adapter.num_query_tokn``), so a typo in a YAML file never
silently falls back to a default. Values derived from other sections (the adapter's cross-attention width from the
vision width) are filled in one place, :meth:`LManConfig.finalize`.
"""
from __future__ import annotations

import copy
import dataclasses
import io
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import yaml


class ConfigError(ValueError):
    """A configuration problem; the message names the key path (and the file when there is one)."""


@dataclass
class VisionConfig:
    """CLIP vision tower; field names follow HF ``CLIPVisionConfig``."""
    hidden_size: int = 1024            # ViT-L/14 width
    intermediate_size: int = 4096
    num_hidden_layers: int = 24        # 2m in eq. (1)
    num_attention_heads: int = 16
    image_size: int = 224              # trained resolution; other sizes resample the position embeddings
    patch_size: int = 14
    num_channels: int = 3
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    # How a ViT trained from scratch starts its position embeddings (a converted CLIP overwrites them): "normal"
    # (small random, as HF's init) or "sincos" (2-D sine-cosine at unit scale, as MAE's; docs/localisation.md).
    position_embedding_init: str = "normal"


@dataclass
class TextConfig:
    """CLIP text transformer (frozen stage-1 text encoder; initialises adapter SA/FFN)."""
    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    projection_dim: int = 768          # T_g width (text_projection output)
    bos_token_id: int = 49406
    eos_token_id: int = 49407          # pooling token; HF legacy value 2 means "argmax of input_ids"
    pad_token_id: int = 49407


@dataclass
class AdapterConfig:
    """Query adapter, eq. (2): m layers of SA -> CA(V_2k) -> FFN over [queries ; instruction tokens]."""
    num_hidden_layers: int = 12        # m = L/2
    hidden_size: int = 768             # CLIP text width, so SA/FFN can start from the text transformer
    intermediate_size: int = 3072
    num_attention_heads: int = 12
    num_query_tokens: int = 128
    num_instruction_tokens: int = 32   # fixed-length CLIP-tokenised instruction
    encoder_hidden_size: Optional[int] = None  # cross-attention key/value width; derived from vision.hidden_size
    multi_grained: bool = True         # False: every CA layer reads the last ViT layer (ablation, Table 6)
    instruction_aware: bool = True     # False: queries only (ablation, Table 6)
    init_from_text: bool = True        # copy SA/FFN/LN (and token embeddings) from the CLIP text layers
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    initializer_range: float = 0.02
    # Where the paper is silent (docs/decisions.md): the new parts' init. None / 1.0 are BLIP-2's Q-Former init.
    query_init_std: Optional[float] = None     # std of the learnable queries; None: initializer_range
    cross_attention_init_gain: float = 1.0     # multiplies CA's q_proj / k_proj init (sharper first attention)


@dataclass
class LLMConfig:
    """Vicuna / LLaMA decoder; field names follow HF ``LlamaConfig``."""
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: Optional[int] = None
    max_position_embeddings: int = 2048  # also the mindformers seq_length the causal mask is built for
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0
    tie_word_embeddings: bool = False
    compute_dtype: str = "float32"     # bfloat16 / float16 on Ascend; CPU has no bf16 MatMul
    use_flash_attention: bool = False  # Ascend only
    initializer_range: Optional[float] = None  # None: mindformers' N(0, 0.01); 0.02 redraws as HF (from scratch)


@dataclass
class LossConfig:
    """Stage-1 objectives: L = L_lic + lambda * L_vmlm (eq. 7)."""
    lic: bool = True                   # language-image contrastive loss, eq. (3)-(5)
    vmlm: bool = True                  # vision-grounded masked language modelling, eq. (6)
    vmlm_weight: float = 1.0           # lambda in eq. (7)
    temperature: float = 0.07          # 1.0 with learnable_temperature=False is eq. (3) literally
    learnable_temperature: bool = True
    max_logit_scale: float = 100.0     # clamp of 1/temperature, as CLIP does
    mlm_probability: float = 0.15      # masked fraction, split 80/10/10 (mask/random/keep)
    embed_dim: Optional[int] = None    # V_g projection width; derived from text.projection_dim


@dataclass
class LoraConfig:
    rank: int = 0                      # 0 disables LoRA
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: List[str] = field(default_factory=lambda: ["wq", "wv"])


@dataclass
class TrainConfig:
    stage: int = 2                     # 1: representation learning; 2: instruction tuning
    seed: int = 42
    output_dir: str = "output"
    max_steps: int = 1000
    global_batch_size: int = 8         # may be overridden per task in data.tasks
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    min_learning_rate: float = 0.0
    warmup_steps: int = 100
    weight_decay: float = 0.05
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    # learning-rate multiplier per component (vision_model, adapter, language_projection, llm, ...; others 1.0):
    # the visual path of a model whose LLM also trains gets a larger step, as in LLaVA's mm_projector_lr
    lr_scale: Dict[str, float] = field(default_factory=dict)
    loss_scale: float = 1.0            # static loss scale (fp16 on Ascend); 1.0 = none
    save_steps: int = 500
    keep_last: int = 3
    log_steps: int = 10
    # held-out loss on data.eval_path (train/heldout.py) every eval_steps steps and after the last; 0 = never
    eval_steps: int = 0
    eval_max_batches: int = 8          # per evaluation, spread over the tasks; bounds its cost (forward only)
    max_text_length: int = 256         # LLM sequence length bucket upper bound (stage 2)
    freeze_vision: Optional[bool] = None   # None: by stage (frozen in stage 1, trained in stage 2)
    freeze_adapter: bool = False
    freeze_text: bool = True           # stage 1's CLIP text tower (frozen in the paper)
    freeze_llm: bool = True            # stage 2: frozen except trainable_llm_layers / LoRA
    trainable_llm_layers: int = 0      # stage 2: train the last N decoder layers (and the final norm)
    lora: LoraConfig = field(default_factory=LoraConfig)
    init_checkpoint: str = ""          # an lman_ms checkpoint folder/.ckpt (e.g. stage 1's, for the stage-2 adapter)
    vision_init: str = ""              # HF CLIP folder for the vision tower
    text_init: str = ""                # HF CLIP folder for the text tower (stage 1) and the adapter's SA/FFN init
    llm_init: str = ""                 # HF Vicuna/LLaMA folder
    log_file: bool = True              # also write OUTPUT_DIR/train.log (rank 0)


@dataclass
class TaskDataConfig:
    image_size: int = 224
    batch_size: int = 8


@dataclass
class DataConfig:
    train_path: str = ""               # HumanIns JSONL / MindRecord (stage 2) or captions (stage 1)
    eval_path: str = ""                # held-out records: the trainer's eval loss, tools/evaluate.py, eval_retrieval.py
    image_root: str = ""
    tokenizer_path: str = ""           # folder with LLaMA tokenizer.model
    clip_tokenizer_path: str = ""      # folder with CLIP vocab.json + merges.txt
    system_prompt: Optional[str] = None  # Vicuna v1.1 system prompt when None; tiny configs shorten it
    task_sampling_alpha: float = 0.5   # P(task) proportional to size**alpha
    num_workers: int = 2
    tasks: Dict[str, TaskDataConfig] = field(default_factory=dict)


@dataclass
class ParallelConfig:
    data_parallel: int = 1
    model_parallel: int = 1
    pipeline_stage: int = 1
    micro_batch_num: int = 1
    enable_parallel_optimizer: bool = False
    recompute: bool = False


@dataclass
class ContextConfig:
    mode: str = "GRAPH_MODE"           # or PYNATIVE_MODE
    device_target: str = "CPU"         # CPU or Ascend
    jit_level: str = "O0"
    max_device_memory: str = ""


@dataclass
class LManConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    context: ContextConfig = field(default_factory=ContextConfig)

    def finalize(self) -> "LManConfig":
        """Fill derived values and check cross-section consistency; returns self."""
        if self.adapter.encoder_hidden_size is None:
            self.adapter.encoder_hidden_size = self.vision.hidden_size
        if self.loss.embed_dim is None:
            self.loss.embed_dim = self.text.projection_dim
        if self.adapter.init_from_text and self.adapter.hidden_size != self.text.hidden_size:
            raise ConfigError("adapter.hidden_size must equal text.hidden_size when adapter.init_from_text is true "
                              f"({self.adapter.hidden_size} != {self.text.hidden_size})")
        if self.adapter.multi_grained and 2 * self.adapter.num_hidden_layers > self.vision.num_hidden_layers:
            raise ConfigError("adapter.num_hidden_layers must be at most vision.num_hidden_layers / 2 with "
                              "multi_grained (layer k reads ViT layer 2k)")
        for name in ("hidden_size",):
            for sec in ("vision", "text", "adapter", "llm"):
                sub = getattr(self, sec)
                if getattr(sub, name) % sub.num_attention_heads:
                    raise ConfigError(f"{sec}.{name} ({getattr(sub, name)}) is not divisible by "
                                      f"{sec}.num_attention_heads ({sub.num_attention_heads})")
        if self.vision.position_embedding_init not in ("normal", "sincos"):
            raise ConfigError("vision.position_embedding_init must be 'normal' or 'sincos', got "
                              f"{self.vision.position_embedding_init!r}")
        if self.vision.position_embedding_init == "sincos" and self.vision.hidden_size % 4:
            raise ConfigError("vision.position_embedding_init 'sincos' needs vision.hidden_size divisible by 4 "
                              f"(half the channels per axis, sine and cosine), got {self.vision.hidden_size}")
        if self.train.stage not in (1, 2):
            raise ConfigError(f"train.stage must be 1 or 2, got {self.train.stage}")
        if self.train.eval_steps < 0 or self.train.eval_max_batches < 1:
            raise ConfigError(f"train.eval_steps must be >= 0 (got {self.train.eval_steps}) and "
                              f"train.eval_max_batches >= 1 (got {self.train.eval_max_batches})")
        if self.train.eval_steps > 0 and not self.data.eval_path:
            raise ConfigError(f"train.eval_steps={self.train.eval_steps} needs data.eval_path (the held-out records "
                              "whose loss the trainer logs)")
        return self

    # ---- (de)serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], source: str = "<dict>") -> "LManConfig":
        return _build(cls, data or {}, "", source).finalize()

    @classmethod
    def from_yaml(cls, path: str, overrides: Optional[List[str]] = None) -> "LManConfig":
        """Load ``path``; ``overrides`` are ``section.key=value`` strings (values parsed as YAML scalars)."""
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        with open(path, "r", encoding="utf-8") as f:
            try:
                data = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{path}: invalid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        data = apply_overrides(data, overrides or [])
        return cls.from_dict(data, source=path)

    def save(self, path: str) -> None:
        from lman_ms.utils.io import atomic_write_text
        atomic_write_text(path, self.to_yaml())


def apply_overrides(data: Dict[str, Any], overrides: List[str]) -> Dict[str, Any]:
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: {p!r} is not a section")
        node[parts[-1]] = yaml.safe_load(io.StringIO(value))
    return data


def _build(cls, data: Any, path: str, source: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {path or 'top level'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        where = ", ".join(f"{path}.{k}" if path else k for k in unknown)
        raise ConfigError(f"{source}: unknown config key(s): {where} (known: {', '.join(fields)})")
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        sub = _dataclass_type(cls, f)
        key = f"{path}.{name}" if path else name
        if sub is not None:
            kwargs[name] = _build(sub, value or {}, key, source)
        elif name == "tasks" and cls is DataConfig:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {key} must be a mapping of task name -> settings")
            kwargs[name] = {t: _build(TaskDataConfig, v or {}, f"{key}.{t}", source) for t, v in value.items()}
        else:
            kwargs[name] = _check_type(cls, f, value, key, source)
    return cls(**kwargs)


def _dataclass_type(cls, f):
    hint = _resolved_hints(cls)[f.name]
    return hint if dataclasses.is_dataclass(hint) else None


_HINTS: Dict[type, Dict[str, Any]] = {}


def _resolved_hints(cls):
    if cls not in _HINTS:
        import typing
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _check_type(cls, f, value, key, source):
    import typing
    hint = _resolved_hints(cls)[f.name]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union and type(None) in args:
        if value is None:
            return None
        hint = [a for a in args if a is not type(None)][0]
        origin = typing.get_origin(hint)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads "2e-4" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if hint in (int, float, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{source}: {key} must be {hint.__name__}, got {value!r}")
        return value
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a mapping, got {value!r}")
        if args and args[1] is float:
            bad = [k for k, v in value.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
            if bad:
                raise ConfigError(f"{source}: {key}.{bad[0]} must be a number, got {value[bad[0]]!r}")
            return {k: float(v) for k, v in value.items()}
        return dict(value)
    if origin in (list, List):
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        return list(value)
    return value


def load_config(path: Optional[str] = None, overrides: Optional[List[str]] = None) -> LManConfig:
    """Config from ``path``, or the defaults (the paper's sizes) when ``path`` is None."""
    if path is None:
        return LManConfig.from_dict(apply_overrides({}, overrides or []))
    return LManConfig.from_yaml(path, overrides)
