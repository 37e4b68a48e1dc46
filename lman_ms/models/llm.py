"""The language model of L-Man: Vicuna (LLaMA architecture) on mindformers cells.

``VicunaDecoder`` wraps ``mindformers.models.llama.LlamaForCausalLM`` configured for the backend and gives it the
interface the composite model needs:

* ``construct(input_ids=None, input_embeds=None, attention_mask=None) -> logits (batch, seq, vocab)``. The visual
  tokens enter as embeddings (``input_embeds``), concatenated by the caller with ``embed_tokens(input_ids)``.
* any sequence length up to ``max_position_embeddings``, computed at that length: mindformers slices its causal
  mask to the input only in PYNATIVE_MODE or for dynamic shapes, so the wrapper turns that slicing on (see
  ``_mask_any_length``) rather than padding every input to ``seq_length`` (attention cost grows with the square of
  the length: the tiny demo's batches are 124-316 positions long against a seq_length of 320);
* ``loss(logits, labels)``: the stage-2 objective, eq. (8) (next-token cross-entropy on labels != -100).

Why ``construct`` calls ``llama.model`` and ``llama.lm_head`` instead of ``LlamaForCausalLM.construct``: the latter
accepts ``input_embeds`` (checked on CPU in GRAPH_MODE and PYNATIVE_MODE) but (a) derives the padding mask from
``input_ids != pad_token_id``, so a padding mask cannot be given with embeddings, and (b) switches behaviour with
the training flag (it drops the last token and returns mindformers' own loss). Calling its two submodules keeps
the mindformers cells and parameter names while making the forward the same in training and inference.

Parameter names are mindformers-native (``model.layers.0.attention.wq.weight``, ``lm_head.weight``): the wrapper
does not add a prefix (``auto_prefix=False``), so ``lman_ms.convert.llama`` maps straight onto it.
"""
from __future__ import annotations

import logging
from typing import Dict, Mapping, Optional

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from lman_ms.config import LLMConfig
from lman_ms.models.losses import causal_lm_loss

logger = logging.getLogger(__name__)

# mindformers' additive attention mask value (LowerTriangularMaskWithDynamic.multiply_data); the KV-cache cells use
# the same value so that cached and recomputed attention agree to float rounding.
MASK_VALUE = -10000.0


def build_llama_config(config: LLMConfig, device_target: Optional[str] = None, use_past: bool = False,
                       batch_size: int = 1, block_size: int = 16, num_blocks: int = 512):
    """A mindformers ``LlamaConfig`` for ``config`` on ``device_target`` (default: the current context's).

    CPU: fp32 everywhere (no bf16 MatMul kernel), no fused RMSNorm, slice-based rotary, no flash attention (their
    kernels are Ascend-only). Ascend: ``config.compute_dtype`` for matmuls, fp32 norms/softmax/rotary/parameters,
    fused kernels and ``config.use_flash_attention``. ``use_past`` (Ascend only) enables mindformers' paged-attention
    incremental inference, used by ``generate(..., backend="mindformers")``.
    """
    _mindformers_logs_to_stderr()
    from mindformers.models.llama import LlamaConfig

    device = device_target or ms.get_context("device_target")
    on_cpu = device.upper() == "CPU"
    compute_dtype = config.compute_dtype
    flash = config.use_flash_attention
    if on_cpu:
        if compute_dtype != "float32":
            logger.warning("llm.compute_dtype=%s has no CPU MatMul kernel; using float32 on CPU", compute_dtype)
        if flash:
            logger.warning("llm.use_flash_attention is Ascend-only; disabled on CPU")
        if use_past:
            raise ValueError("use_past=True (mindformers paged-attention inference) needs Ascend kernels; on CPU "
                             "use lman_ms.infer.generate with the static KV cache")
        compute_dtype, flash = "float32", False
    if compute_dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"llm.compute_dtype must be float32, float16 or bfloat16, got {compute_dtype!r}")
    return LlamaConfig(
        batch_size=batch_size,
        seq_length=config.max_position_embeddings,
        max_position_embedding=config.max_position_embeddings,
        hidden_size=config.hidden_size,
        num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        n_kv_heads=config.num_key_value_heads,
        intermediate_size=config.intermediate_size,
        vocab_size=config.vocab_size,
        rms_norm_eps=config.rms_norm_eps,
        theta=config.rope_theta,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        tie_word_embeddings=config.tie_word_embeddings,
        compute_dtype=compute_dtype,
        layernorm_compute_type="float32",
        softmax_compute_type="float32",
        rotary_dtype="float32",
        param_init_type="float32",
        embedding_init_type="float32",
        fused_rms_norm=not on_cpu,
        use_rope_slice=on_cpu,
        use_flash_attention=flash,
        use_past=use_past,
        block_size=block_size,
        num_blocks=num_blocks,
    )


def _mask_any_length(mask_cell) -> None:
    """Let mindformers' ``LowerTriangularMaskWithDynamic`` serve any input length up to its ``seq_length``.

    Its ``construct`` slices the stored (seq_length, seq_length) triangle to the input's length only when
    ``is_pynative or is_dynamic``; in GRAPH_MODE with static shapes it uses the whole triangle, which forces every
    input to be padded to ``seq_length``. In the non-paged path (``use_past=False``) ``is_dynamic`` is read nowhere
    else in that cell, and the slice bounds come from the static input shape, so each input length compiles to its
    own static graph, the same computation as padding and slicing back minus the padded rows and columns."""
    if not hasattr(mask_cell, "is_dynamic") or not hasattr(mask_cell, "lower_triangle_mask"):
        raise RuntimeError("mindformers' LowerTriangularMaskWithDynamic changed: VicunaDecoder relies on its "
                           "is_dynamic flag to slice the causal mask; pin mindformers as in requirements.txt")
    mask_cell.is_dynamic = True


def _mindformers_logs_to_stderr() -> None:
    """Import mindformers with its console log on stderr. Its logger (named ``mindformers<log dir>``) prints INFO
    and WARNING lines, two of them while it is imported, on stdout, where they mixed into the answers that
    ``tools/infer.py`` prints. The handler takes ``sys.stdout`` when it is created, at import, so the import runs
    with stdout pointing at stderr; handlers made otherwise are moved too. Its log files stay as they are."""
    import contextlib
    import logging
    import sys
    with contextlib.redirect_stdout(sys.stderr):
        import mindformers  # noqa: F401
    for name, log in list(logging.root.manager.loggerDict.items()):
        if not name.startswith("mindformers") or not isinstance(log, logging.Logger):
            continue
        for handler in log.handlers:
            if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) is sys.stdout:
                handler.setStream(sys.stderr)


def _release_nltk_import_error() -> None:
    """Free the stack that first built a mindformers model.

    Building ``LlamaForCausalLM`` imports nltk the first time, and ``nltk.parse.bllip`` keeps the ImportError of its
    optional ``bllipparser`` as a default argument. That error's traceback reaches, through the frames' ``f_back``
    links, every frame of the stack that triggered the import, ours included, whose locals hold the model being
    built: the first model of a process was never freed (the demo kept its stage-2 trainer alive through
    evaluation). The error message is kept; only the traceback is dropped.
    """
    import sys
    bllip = sys.modules.get("nltk.parse.bllip")
    hook = getattr(bllip, "_ensure_bllip_import_or_error", None)
    for default in getattr(hook, "__defaults__", None) or ():
        if isinstance(default, BaseException):
            default.__traceback__ = None


class VicunaDecoder(nn.Cell):
    """Vicuna / LLaMA decoder producing next-token logits; the LLM of L-Man (eq. 8).

    Args:
        config: ``LLMConfig`` (HF ``LlamaConfig`` field names).
        use_past: build mindformers' Ascend incremental-inference cells (paged attention) instead of the plain
            forward; only for ``generate(..., backend="mindformers")`` on Ascend.
        batch_size: batch size of the paged-attention cache (``use_past`` only).
    """

    def __init__(self, config: LLMConfig, use_past: bool = False, batch_size: int = 1):
        # auto_prefix=False keeps the mindformers parameter names ("model.layers.0...") at the top level.
        super().__init__(auto_prefix=False)
        _mindformers_logs_to_stderr()
        from mindformers.models.llama import LlamaForCausalLM

        self.config = config
        self.use_past = use_past
        self.llama_config = build_llama_config(config, use_past=use_past, batch_size=batch_size)
        self.llama = LlamaForCausalLM(self.llama_config)
        _release_nltk_import_error()
        if not use_past:
            _mask_any_length(self.llama.model.casual_mask)
        self.seq_length = config.max_position_embeddings
        self.hidden_size = config.hidden_size
        self.pad_token_id = config.pad_token_id
        self.compute_dtype = self.llama.model.dtype
        if config.initializer_range is not None:    # a decoder trained from scratch; pretrained loads skip it
            self._init_like_hf(config.initializer_range)

    def _init_like_hf(self, std: float) -> None:
        """Re-draw the matrices as HF ``LlamaPreTrainedModel._init_weights`` does, N(0, initializer_range), where
        mindformers draws N(0, 0.01): a decoder trained from scratch (the tiny demo, the tests) then starts as the
        HF reference does. Pretrained weights overwrite either."""
        from mindspore.common.initializer import Normal, initializer
        for p in self.llama.get_parameters():
            if len(p.shape) == 2:
                p.set_data(initializer(Normal(sigma=std), p.shape, p.dtype))

    # ---- pieces the composite model and the generator use ---------------------------------------------------------
    def embed_tokens(self, input_ids: Tensor) -> Tensor:
        """Token embeddings (batch, seq, hidden) of int ``input_ids``; HF ``embed_tokens``."""
        return self.llama.model.tok_embeddings(input_ids)

    @property
    def layers(self) -> nn.CellList:
        return self.llama.model.layers

    @staticmethod
    def loss(logits: Tensor, labels: Tensor) -> Tensor:
        """Stage-2 objective, eq. (8): mean -log p(z_i | Z_ins, Z_a,<i) over positions whose label is not -100;
        logits at position t predict the label at t+1."""
        return causal_lm_loss(logits, labels)

    # ---- forward ----------------------------------------------------------------------------------------------------
    def construct(self, input_ids=None, input_embeds=None, attention_mask=None, logits_from: int = 0):
        """Logits (batch, seq - logits_from, vocab), float32: positions ``logits_from`` .. seq - 1.

        ``logits_from`` (a Python int, static in GRAPH_MODE) skips the LM head on leading positions whose
        predictions no loss reads (stage 2's prefix and visual tokens): with a 32000-token vocabulary the head and
        its input gradient are the largest matmuls of a small model's step.
        ``input_ids`` (batch, seq) int or ``input_embeds`` (batch, seq, hidden); when both are given the embeddings
        are used. ``attention_mask`` (batch, seq): 1 for real tokens, 0 for padding (default: all ones, as in HF;
        mindformers' own default ``input_ids != pad_token_id`` is not used because Vicuna's pad id 0 is ``<unk>``).
        Padding may be on either side; rotary positions are absolute (0..seq-1), which for left padding gives the
        same attention scores as per-sequence positions because rotary attention depends only on q - k.
        """
        if input_embeds is None:
            if input_ids is None:
                raise ValueError("VicunaDecoder needs input_ids or input_embeds")
            input_embeds = self.embed_tokens(input_ids)
        bs, seq_len, _ = input_embeds.shape
        if seq_len > self.seq_length:
            raise ValueError("VicunaDecoder: sequence longer than llm.max_position_embeddings")
        if attention_mask is None:
            attention_mask = ops.ones((bs, seq_len), ms.int32)
        attention_mask = attention_mask.astype(ms.int32)
        # LlamaModel derives the key-padding mask from "tokens != pad_token_id"; feed it tokens that encode the mask
        # only (the embeddings come from input_embeds).
        mask_tokens = attention_mask * (self.pad_token_id + 1) + (1 - attention_mask) * self.pad_token_id
        hidden = self.llama.model(mask_tokens, input_embeds)
        hidden = hidden[:, logits_from:seq_len]
        logits = self.llama.lm_head(hidden)
        return logits.astype(ms.float32)

    # ---- weights ----------------------------------------------------------------------------------------------------
    def load_state(self, state: Mapping[str, np.ndarray], source: str = "<state dict>", strict: bool = True) -> None:
        """Copy numpy arrays keyed by mindformers-native names into the parameters (in place, same objects).

        Raises ``KeyError``/``ValueError`` naming ``source`` and the offending key on a missing or unexpected key
        or a shape mismatch; nothing is modified unless every key checks out.
        """
        params = self.native_parameters()
        if self.config.tie_word_embeddings:
            params.pop("lm_head.weight", None)
            state = {k: v for k, v in state.items() if k != "lm_head.weight"}
        unexpected = sorted(set(state) - set(params))
        missing = sorted(set(params) - set(state))
        if strict and (unexpected or missing):
            raise KeyError(f"{source}: state does not match VicunaDecoder: missing {missing[:8]}"
                           f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
                           f"{' ...' if len(unexpected) > 8 else ''}")
        for name, array in state.items():
            if name in params and tuple(np.shape(array)) != tuple(params[name].shape):
                raise ValueError(f"{source}: {name}: shape {tuple(np.shape(array))} does not match the model's "
                                 f"{tuple(params[name].shape)}")
        for name, array in state.items():
            if name in params:
                param = params[name]
                param.set_data(Tensor(np.asarray(array), dtype=param.dtype))

    def native_parameters(self) -> Dict[str, Parameter]:
        """Parameters keyed by their mindformers-native name, whatever prefix an enclosing cell has added."""
        return {name: param for name, param in self.llama.parameters_and_names()}

    @classmethod
    def from_hf(cls, hf_dir: str, **kwargs) -> "VicunaDecoder":
        """Build from a Hugging Face ``LlamaForCausalLM`` folder (``config.json`` + safetensors/bin shards)."""
        from lman_ms.convert.llama import llama_config_from_hf, load_llama_state

        decoder = cls(llama_config_from_hf(hf_dir), **kwargs)
        decoder.load_state(load_llama_state(hf_dir), source=hf_dir)
        return decoder
