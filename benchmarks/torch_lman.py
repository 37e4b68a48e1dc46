"""The PyTorch reference of the training-step benchmark: L-Man's stage-2 model composed from Hugging Face parts.

``CLIPVisionModel`` (all hidden states, eq. 1) -> a query adapter with the same layers as
``lman_ms.models.adapter.QueryAdapter`` (eq. 2: SA over [queries ; instruction tokens] -> CA to V_2k -> FFN, each
pre-LN with a residual) -> ``nn.Linear`` projection -> ``LlamaForCausalLM`` fed ``inputs_embeds`` =
[prefix ; visual tokens ; text] with labels on the answer only (eq. 8). Sizes, trainable set (vision, adapter,
projection, the LLM's last layers and final norm) and optimiser (AdamW with the same decay groups, global-norm
clipping) are those of the MindSpore step, so both sides do the same work; the parameter counts are checked equal.

Attention runs as Hugging Face runs it by default (``sdpa``); the adapter uses ``scaled_dot_product_attention``
too, so the reference is what a PyTorch user of these classes gets.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
import transformers
from torch import nn

from lman_ms.config import LManConfig

_ACT = {"quick_gelu": lambda x: x * torch.sigmoid(1.702 * x), "gelu": F.gelu}


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_dim: int):
        super().__init__()
        self.heads = heads
        self.q_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.k_proj, self.v_proj = nn.Linear(kv_dim, dim), nn.Linear(kv_dim, dim)

    def _split(self, x):
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x, kv, mask=None):
        out = F.scaled_dot_product_attention(self._split(self.q_proj(x)), self._split(self.k_proj(kv)),
                                             self._split(self.v_proj(kv)), attn_mask=mask)
        b, h, t, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, t, h * d))


class _AdapterLayer(nn.Module):
    def __init__(self, d: int, dv: int, heads: int, inter: int, eps: float, act: str):
        super().__init__()
        self.layer_norm1, self.layer_norm_cross = nn.LayerNorm(d, eps), nn.LayerNorm(d, eps)
        self.layer_norm_kv, self.layer_norm2 = nn.LayerNorm(dv, eps), nn.LayerNorm(d, eps)
        self.self_attn, self.crossattention = _Attention(d, heads, d), _Attention(d, heads, dv)
        self.fc1, self.fc2 = nn.Linear(d, inter), nn.Linear(inter, d)
        self.act = _ACT[act]

    def forward(self, x, vision_state, mask):
        h = self.layer_norm1(x)
        x = x + self.self_attn(h, h, mask)
        x = x + self.crossattention(self.layer_norm_cross(x), self.layer_norm_kv(vision_state))
        return x + self.fc2(self.act(self.fc1(self.layer_norm2(x))))


class TorchQueryAdapter(nn.Module):
    """PyTorch twin of ``QueryAdapter`` (multi-grained, instruction-aware): layer k reads V_2(k+1)."""

    def __init__(self, cfg: LManConfig):
        super().__init__()
        a = cfg.adapter
        self.query_tokens = nn.Parameter(torch.randn(1, a.num_query_tokens, a.hidden_size) * a.initializer_range)
        self.token_embedding = nn.Embedding(cfg.text.vocab_size, a.hidden_size)
        self.position_embedding = nn.Embedding(a.num_instruction_tokens, a.hidden_size)
        self.layers = nn.ModuleList(
            _AdapterLayer(a.hidden_size, a.encoder_hidden_size, a.num_attention_heads, a.intermediate_size,
                          a.layer_norm_eps, a.hidden_act) for _ in range(a.num_hidden_layers))
        self.final_layer_norm = nn.LayerNorm(a.hidden_size, a.layer_norm_eps)
        self.num_query_tokens = a.num_query_tokens

    def forward(self, vision_states, instruction_ids, instruction_mask):
        b = instruction_ids.shape[0]
        pos = torch.arange(instruction_ids.shape[1], device=instruction_ids.device)
        ins = self.token_embedding(instruction_ids) + self.position_embedding(pos)[None]
        x = torch.cat((self.query_tokens.expand(b, -1, -1), ins), 1)
        keep = torch.cat((torch.ones(b, self.num_query_tokens, dtype=torch.bool), instruction_mask.bool()), 1)
        mask = keep[:, None, None, :]  # padding mask over keys, bidirectional
        for k, layer in enumerate(self.layers):
            x = layer(x, vision_states[2 * (k + 1)], mask)
        return self.final_layer_norm(x[:, : self.num_query_tokens])


class TorchLMan(nn.Module):
    """Stage-2 L-Man in PyTorch: ``forward(batch) -> loss`` of eq. (8)."""

    def __init__(self, cfg: LManConfig):
        super().__init__()
        v, m = cfg.vision, cfg.llm
        self.vision_model = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(
            hidden_size=v.hidden_size, intermediate_size=v.intermediate_size, num_hidden_layers=v.num_hidden_layers,
            num_attention_heads=v.num_attention_heads, image_size=v.image_size, patch_size=v.patch_size,
            num_channels=v.num_channels, layer_norm_eps=v.layer_norm_eps, hidden_act=v.hidden_act))
        self.adapter = TorchQueryAdapter(cfg)
        self.language_projection = nn.Linear(cfg.adapter.hidden_size, m.hidden_size)
        self.llm = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=m.vocab_size, hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
            num_hidden_layers=m.num_hidden_layers, num_attention_heads=m.num_attention_heads,
            num_key_value_heads=m.num_key_value_heads or m.num_attention_heads,
            max_position_embeddings=m.max_position_embeddings, rms_norm_eps=m.rms_norm_eps, rope_theta=m.rope_theta,
            tie_word_embeddings=m.tie_word_embeddings, pad_token_id=m.pad_token_id))

    def forward(self, pixel_values, instruction_ids, instruction_mask, prefix_ids, input_ids, attention_mask,
                labels):
        states = self.vision_model(pixel_values=pixel_values, output_hidden_states=True).hidden_states
        visual = self.language_projection(self.adapter(states, instruction_ids, instruction_mask))
        b = input_ids.shape[0]
        embed = self.llm.get_input_embeddings()
        embeds = torch.cat((embed(prefix_ids.expand(b, -1)), visual, embed(input_ids)), 1)
        front = embeds.shape[1] - input_ids.shape[1]
        mask = torch.cat((torch.ones(b, front, dtype=attention_mask.dtype), attention_mask), 1)
        full_labels = torch.cat((torch.full((b, front), -100, dtype=labels.dtype), labels), 1)
        return self.llm(inputs_embeds=embeds, attention_mask=mask, labels=full_labels).loss


def freeze_like_stage2(model: TorchLMan, trainable_llm_layers: int) -> Dict[str, Dict[str, int]]:
    """The trainable set of ``lman_ms.train.freeze.apply_freezing`` for stage 2; returns per-component counts."""
    n_layers = model.llm.config.num_hidden_layers
    counts: Dict[str, Dict[str, int]] = {}
    for name, p in model.named_parameters():
        comp = name.split(".", 1)[0]
        if comp == "llm":
            parts = name.split(".")
            if "layers" in parts:
                train = int(parts[parts.index("layers") + 1]) >= n_layers - trainable_llm_layers
            else:
                train = trainable_llm_layers > 0 and name == "llm.model.norm.weight"
        else:
            train = True
        p.requires_grad_(train)
        c = counts.setdefault(comp, {"trainable": 0, "total": 0})
        c["total"] += p.numel()
        c["trainable"] += p.numel() if train else 0
    return counts


def build_torch_step(cfg: LManConfig) -> Tuple[TorchLMan, torch.optim.Optimizer, Dict[str, Dict[str, int]]]:
    """Model and AdamW with decay groups like ``lman_ms.train.optim`` (none for vectors, norms, embeddings and the
    query tokens; HF names its embeddings differently, which moves a few tensors between groups, not any work)."""
    model = TorchLMan(cfg).train()
    counts = freeze_like_stage2(model, cfg.train.trainable_llm_layers)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            vector_like = p.ndim < 2 or "norm" in name or "query_tokens" in name or "embed" in name
            (no_decay if vector_like else decay).append(p)
    t = cfg.train
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": t.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=t.learning_rate, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_eps)
    return model, opt, counts


def torch_train_step(model: TorchLMan, opt: torch.optim.Optimizer, batch, max_grad_norm: float) -> float:
    """Forward, backward, global-norm clipping, AdamW update; returns the loss."""
    opt.zero_grad(set_to_none=True)
    loss = model(*batch)
    loss.backward()
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], max_grad_norm)
    opt.step()
    return float(loss.detach())
