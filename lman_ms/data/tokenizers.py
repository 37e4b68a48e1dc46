"""Tokenizers, loaded from local folders only (no model hub).

* LLM side: Vicuna/LLaMA's sentencepiece ``tokenizer.model`` (the ``sentencepiece`` library itself).
* Adapter/text-encoder side: CLIP's BPE ``vocab.json`` + ``merges.txt`` through ``transformers.CLIPTokenizer``; a
  folder with a ``tokenizer.model`` instead is read with sentencepiece (the tiny configuration uses one small
  sentencepiece model for both sides).
* :func:`train_sentencepiece` trains the tiny model's tokenizer on the SynthHuman text, splitting digits as LLaMA
  does, so that coordinates tokenise digit by digit at both scales.
"""
from __future__ import annotations

import io
import os
from typing import Iterable, List, Optional

import numpy as np


class SentencePieceTokenizer:
    def __init__(self, model_file: str):
        import sentencepiece as spm
        if not os.path.isfile(model_file):
            raise FileNotFoundError(f"sentencepiece model not found: {model_file}")
        self.path = model_file
        self.sp = spm.SentencePieceProcessor(model_file=model_file)
        self.vocab_size = self.sp.get_piece_size()
        self.bos_id, self.eos_id = self.sp.bos_id(), self.sp.eos_id()
        pad = self.sp.pad_id()
        self.pad_id = pad if pad >= 0 else 0  # LLaMA has no pad piece; 0 (<unk>) is masked out anyway

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> List[int]:
        ids = self.sp.encode(text)
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Iterable[int]) -> str:
        keep = [int(i) for i in ids if int(i) not in (self.bos_id, self.eos_id, self.pad_id) and int(i) >= 0]
        return self.sp.decode(keep)


class ClipTokenizer:
    """CLIP BPE from ``vocab.json``/``merges.txt`` (transformers' reference implementation)."""

    def __init__(self, folder: str):
        from transformers import CLIPTokenizer
        vocab, merges = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
        for f in (vocab, merges):
            if not os.path.isfile(f):
                raise FileNotFoundError(f"CLIP tokenizer file not found: {f}")
        self.tok = CLIPTokenizer(vocab, merges)
        self.vocab_size = len(self.tok)
        self.bos_id, self.eos_id = self.tok.bos_token_id, self.tok.eos_token_id
        self.pad_id = self.tok.pad_token_id

    def encode(self, text: str, bos: bool = True, eos: bool = True) -> List[int]:
        ids = self.tok.encode(text, add_special_tokens=False)
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)


def load_llm_tokenizer(path: str) -> SentencePieceTokenizer:
    """``path``: a folder holding ``tokenizer.model`` (a Vicuna/LLaMA checkpoint folder) or the file itself."""
    return SentencePieceTokenizer(os.path.join(path, "tokenizer.model") if os.path.isdir(path) else path)


def load_clip_tokenizer(path: str):
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "vocab.json")):
        return ClipTokenizer(path)
    if os.path.isfile(path) or os.path.isfile(os.path.join(path, "tokenizer.model")):
        return load_llm_tokenizer(path)
    raise FileNotFoundError(f"no CLIP tokenizer (vocab.json + merges.txt) or tokenizer.model in {path!r} "
                            f"(data.clip_tokenizer_path / data.tokenizer_path)")


def fixed_length(tokenizer, text: str, length: int) -> tuple:
    """CLIP-style fixed-length ids and 1/0 mask: [BOS] text [EOS] padded/truncated to ``length`` (EOS kept)."""
    ids = tokenizer.encode(text, bos=True, eos=False)[: length - 1] + [tokenizer.eos_id]
    out = np.full(length, tokenizer.pad_id, np.int32)
    out[: len(ids)] = ids
    mask = np.zeros(length, np.float32)
    mask[: len(ids)] = 1
    return out, mask


def train_sentencepiece(texts: Iterable[str], out_dir: str, vocab_size: int = 512,
                        user_symbols: Optional[List[str]] = None) -> str:
    """Train a small LLaMA-style BPE sentencepiece model (digits split, byte fallback) and write
    ``out_dir/tokenizer.model``; deterministic for the same texts. Returns the model path."""
    import sentencepiece as spm
    from lman_ms.utils.io import atomic_write_bytes
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(texts)), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        split_digits=True, byte_fallback=True, character_coverage=1.0, bos_id=1, eos_id=2, unk_id=0, pad_id=-1,
        user_defined_symbols=user_symbols or [], num_threads=1, minloglevel=2, hard_vocab_limit=False)
    path = os.path.join(out_dir, "tokenizer.model")
    atomic_write_bytes(path, model.getvalue())
    return path
