"""Streaming readers and writers for Hugging Face and MindSpore checkpoints.

Readers yield ``(name, np.ndarray)`` one tensor at a time and one shard at a time, so converting a 7B model keeps
about one shard in memory. bf16 tensors are upcast to fp32 on read (numpy has no bf16); writers cast to the
requested output dtype. PyTorch ``.bin`` files are opened with ``torch.load(weights_only=True)`` only: a pickle that
holds anything but tensors is refused, never executed.

The MindSpore ``.ckpt`` format is a protobuf ``Checkpoint`` message whose only field is a repeated ``value``; a
concatenation of serialised messages is therefore one valid message. :func:`write_ms_checkpoint` uses that to
encode each ``value`` header by hand and write the tensor bytes straight after it, one tensor at a time, into a
temporary file that is renamed over the target at the end (no crc/encryption, which would add a trailer).
"""
from __future__ import annotations

import json
import os
import resource
import struct
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from lman_ms.utils.io import atomic_open, atomic_write_text

NamedArray = Tuple[str, np.ndarray]

SAFE_INDEX = "model.safetensors.index.json"
SAFE_SINGLE = "model.safetensors"
BIN_INDEX = "pytorch_model.bin.index.json"
BIN_SINGLE = "pytorch_model.bin"

OUTPUT_DTYPES = ("fp32", "fp16", "bf16")

# safetensors dtype tags -> numpy; BF16 is read as raw uint16 and upcast.
_ST_TO_NP = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64,
             "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_NP_TO_ST = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
             np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.int16): "I16",
             np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file and/or key."""


# ---- dtypes ----------------------------------------------------------------------------------------------------
def bf16_bits_to_fp32(bits: np.ndarray) -> np.ndarray:
    """bf16 is the top half of an fp32, so the upcast is exact."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def fp32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even fp32 -> bf16 bits (what torch and MindSpore do); NaN stays NaN."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | np.uint32(0x40)).astype(np.uint16)
    return rounded


def check_dtype(dtype: Optional[str]) -> Optional[str]:
    if dtype is not None and dtype not in OUTPUT_DTYPES:
        raise CheckpointError(f"unsupported output dtype {dtype!r} (choose from {', '.join(OUTPUT_DTYPES)})")
    return dtype


def cast_float(arr: np.ndarray, dtype: Optional[str]) -> np.ndarray:
    """Cast floating tensors to fp32/fp16; bf16 stays fp32 here (its rounding happens in the writers)."""
    if dtype is None or not np.issubdtype(arr.dtype, np.floating):
        return arr
    return arr.astype(np.float16 if dtype == "fp16" else np.float32, copy=False)


# ---- Hugging Face folders ----------------------------------------------------------------------------------------
def read_json(path: str) -> dict:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None


def read_hf_config(path: str) -> dict:
    """``config.json`` of an HF folder, or the file itself."""
    return read_json(os.path.join(path, "config.json") if os.path.isdir(path) else path)


def find_checkpoint_files(hf_dir: str) -> List[str]:
    """Shard files of an HF folder in index order; safetensors preferred over ``.bin`` like ``from_pretrained``."""
    if not os.path.isdir(hf_dir):
        raise CheckpointError(f"{hf_dir}: not a directory")
    for index_name in (SAFE_INDEX, BIN_INDEX):
        index_path = os.path.join(hf_dir, index_name)
        if os.path.isfile(index_path):
            weight_map = read_json(index_path).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise CheckpointError(f"{index_path}: missing or empty 'weight_map'")
            files = list(dict.fromkeys(weight_map.values()))  # unique, in first-seen order
            paths = [os.path.join(hf_dir, f) for f in files]
            absent = [p for p in paths if not os.path.isfile(p)]
            if absent:
                raise CheckpointError(f"{index_path}: shard file(s) listed but absent: {', '.join(absent)}")
            return paths
    for single in (SAFE_SINGLE, BIN_SINGLE):
        if os.path.isfile(os.path.join(hf_dir, single)):
            return [os.path.join(hf_dir, single)]
    raise CheckpointError(f"{hf_dir}: no {SAFE_SINGLE}, {SAFE_INDEX}, {BIN_SINGLE} or {BIN_INDEX}")


def _safetensors_header(path: str) -> Tuple[dict, int]:
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise CheckpointError(f"{path}: truncated safetensors file (no header length)")
        (n,) = struct.unpack("<Q", raw)
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors header: {e}") from None
    header.pop("__metadata__", None)
    return header, 8 + n


def iter_safetensors(path: str) -> Iterator[NamedArray]:
    """Tensors of one safetensors file, read one at a time (bf16 -> fp32).

    Plain reads rather than a memory map: mapped pages would count in the resident set on top of the copy."""
    header, start = _safetensors_header(path)
    file_size = os.path.getsize(path)
    for name, info in header.items():
        if info.get("dtype") not in _ST_TO_NP:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {info.get('dtype')!r}")
        begin, end = info["data_offsets"]
        if start + end > file_size:
            raise CheckpointError(f"{path}: tensor {name!r} extends past the end of the file (truncated?)")
        dtype = np.dtype(_ST_TO_NP[info["dtype"]])
        arr = np.fromfile(path, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=start + begin)
        arr = arr.reshape(info["shape"])
        yield name, bf16_bits_to_fp32(arr) if info["dtype"] == "BF16" else arr


def iter_torch_bin(path: str) -> Iterator[NamedArray]:
    """Tensors of a PyTorch ``.bin`` via ``torch.load(weights_only=True)``; other pickle content is refused."""
    import pickle

    import torch

    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):  # legacy (non-zip) files cannot be memory-mapped
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message starts with advice to retry with weights_only=False; quote the line naming the global
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        why = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), lines[0])
        raise CheckpointError(f"{path}: refused to load: the pickle holds more than tensors ({why}); .bin files "
                              f"are only read with torch.load(weights_only=True)") from None
    except Exception as e:  # corrupt zip, truncated file, ...
        raise CheckpointError(f"{path}: cannot read PyTorch checkpoint: {e}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: refused: entries that are not named tensors: {bad[:10]}")
    for name in list(state):
        t = state.pop(name)
        yield name, (t.float() if t.dtype == torch.bfloat16 else t).numpy().copy()
        del t


def iter_hf_shards(hf_dir: str) -> Iterator[Tuple[str, Iterator[NamedArray]]]:
    for path in find_checkpoint_files(hf_dir):
        yield path, (iter_safetensors(path) if path.endswith(".safetensors") else iter_torch_bin(path))


def shard_size(path: str) -> Optional[int]:
    """Number of tensors in a shard when it is cheap to know (safetensors header)."""
    return len(_safetensors_header(path)[0]) if path.endswith(".safetensors") else None


def iter_hf_tensors(hf_dir: str, progress: bool = True) -> Iterator[NamedArray]:
    """All tensors of an HF folder, shard by shard, with a tqdm bar per shard."""
    from tqdm import tqdm

    for path, tensors in iter_hf_shards(hf_dir):
        with tqdm(total=shard_size(path), desc=os.path.basename(path), unit="tensor", disable=not progress,
                  leave=False) as bar:
            for item in tensors:
                yield item
                bar.update(1)


# ---- MindSpore checkpoints ---------------------------------------------------------------------------------------
# checkpoint.proto (proto2), as MindSpore ships it in mindspore/train/checkpoint_pb2.py:
#   message Checkpoint { message Value { required string tag = 1; oneof value { TensorProto tensor = 2; ... } }
#                        repeated Value value = 1; }
#   message TensorProto { repeated int64 dims = 1; required string tensor_type = 2; required bytes tensor_content = 3; }
# proto2 repeated scalars are not packed: each dim is its own (field 1, varint) entry.
_MS_TENSOR_TYPES = {np.dtype(np.float64): "Float64", np.dtype(np.float32): "Float32",
                    np.dtype(np.float16): "Float16", np.dtype(np.int64): "Int64", np.dtype(np.int32): "Int32",
                    np.dtype(np.int16): "Int16", np.dtype(np.int8): "Int8", np.dtype(np.uint64): "UInt64",
                    np.dtype(np.uint32): "UInt32", np.dtype(np.uint16): "UInt16", np.dtype(np.uint8): "UInt8",
                    np.dtype(np.bool_): "Bool"}
# mindspore.save_checkpoint writes a tensor's bytes in values of at most 1024 * SLICE_SIZE bytes (512 MiB), each
# repeating the name and full dims; doing the same keeps the output byte-identical to MindSpore's
_MS_CHUNK_BYTES = 1024 * 512 * 1024


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 two's complement, as protobuf encodes negative int64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _length_delimited(field: int, payload_len: int) -> bytes:
    return _varint(field << 3 | 2) + _varint(payload_len)


def _ms_value_header(name: bytes, dims: bytes, tensor_type: bytes, content_len: int) -> bytes:
    """Everything of one serialised ``Checkpoint.value`` entry except the tensor bytes that follow it."""
    tensor_head = dims + _length_delimited(2, len(tensor_type)) + tensor_type + _length_delimited(3, content_len)
    tensor_len = len(tensor_head) + content_len
    value_head = _length_delimited(1, len(name)) + name + _length_delimited(2, tensor_len) + tensor_head
    return _length_delimited(1, len(value_head) + content_len) + value_head


def write_ms_checkpoint(tensors: Iterable[NamedArray], path: str, dtype: str = "fp32",
                        flush_bytes: int = 256 << 20) -> Dict[str, int]:
    """Write ``(name, array)`` pairs to a MindSpore ``.ckpt`` atomically, one tensor at a time.

    Each tensor becomes a short hand-encoded protobuf header followed by its bytes, written straight from the numpy
    array, so no copy of the checkpoint is held in memory; the file is byte-identical to what
    ``mindspore.save_checkpoint`` writes for the same tensors (no crc/encryption), except that a tensor with no
    elements is kept (one value with empty content, which ``load_checkpoint`` reads) where MindSpore drops it. As
    before, a 0-d array is stored with shape ``(1,)``.
    ``flush_bytes`` is accepted for compatibility and unused. Returns ``{"tensors": n, "bytes": payload bytes}``."""
    del flush_bytes
    check_dtype(dtype)
    count, total, seen = 0, 0, set()
    with atomic_open(path, "wb") as out:
        for name, arr in tensors:
            if name in seen:
                raise CheckpointError(f"{path}: parameter {name!r} written twice")
            seen.add(name)
            arr = np.asarray(arr)
            if dtype == "bf16" and np.issubdtype(arr.dtype, np.floating):
                data, tensor_type = fp32_to_bf16_bits(arr.astype(np.float32, copy=False)), "BFloat16"
            else:
                data = np.ascontiguousarray(cast_float(arr, dtype))
                tensor_type = _MS_TENSOR_TYPES.get(data.dtype)
                if tensor_type is None:
                    raise CheckpointError(f"{path}: parameter {name!r} has dtype {data.dtype}, which a MindSpore "
                                          f"checkpoint cannot hold")
            raw = memoryview(data.reshape(-1).view(np.uint8))
            name_b, type_b = name.encode("utf-8"), tensor_type.encode("ascii")
            # a 0-d array is written with shape (1,), as before (np.ascontiguousarray returns at least 1-d)
            dims = b"".join(b"\x08" + _varint(int(d)) for d in (arr.shape or (1,)))
            for start in range(0, max(len(raw), 1), _MS_CHUNK_BYTES):
                chunk = raw[start:start + _MS_CHUNK_BYTES]
                out.write(_ms_value_header(name_b, dims, type_b, len(chunk)))
                out.write(chunk)
            count, total = count + 1, total + data.nbytes
            del raw, data
    return {"tensors": count, "bytes": total}


_MS_TO_NP = {"Float32": np.float32, "Float16": np.float16, "Float64": np.float64, "BFloat16": np.uint16,
             "Int8": np.int8, "Int16": np.int16, "Int32": np.int32, "Int64": np.int64, "UInt8": np.uint8,
             "Bool": np.bool_}


def _read_varint(f, path: str) -> int:
    value, shift = 0, 0
    while True:
        byte = f.read(1)
        if not byte:
            raise CheckpointError(f"{path}: truncated MindSpore checkpoint")
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7


def iter_ms_checkpoint(path: str) -> Iterator[NamedArray]:
    """Tensors of a MindSpore ``.ckpt`` as numpy (bf16 -> fp32), read one protobuf ``value`` at a time.

    The file is a sequence of ``Checkpoint.value`` fields (tag byte 0x0A, varint length, ``Value`` message);
    MindSpore writes a tensor above its slice size as consecutive values with the same name, joined here."""
    from mindspore.train.checkpoint_pb2 import Checkpoint

    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: file not found")

    def finish(name, dims, kind, chunks):
        if kind not in _MS_TO_NP:
            raise CheckpointError(f"{path}: parameter {name!r} has unsupported type {kind!r}")
        arr = np.frombuffer(b"".join(chunks), dtype=_MS_TO_NP[kind]).reshape(dims)
        return name, bf16_bits_to_fp32(arr) if kind == "BFloat16" else arr.copy()

    current = None  # (name, dims, type, [content chunks]) of the tensor being assembled
    with open(path, "rb") as f:
        while True:
            tag = f.read(1)
            if not tag or tag == b"c":  # end of file, or the "crc_num" trailer of crc_check=True files
                break
            if tag != b"\x0a":
                raise CheckpointError(f"{path}: not a MindSpore checkpoint (or encrypted) at byte {f.tell() - 1}")
            value = Checkpoint.Value.FromString(f.read(_read_varint(f, path)))
            if value.HasField("maptensor"):
                raise CheckpointError(f"{path}: parameter {value.tag!r} is a MapParameter, which is not supported")
            t = value.tensor
            if current is not None and current[0] == value.tag:
                current[3].append(t.tensor_content)
                continue
            if current is not None:
                yield finish(*current)
            current = (value.tag, tuple(t.dims), t.tensor_type, [t.tensor_content])
    if current is not None:
        yield finish(*current)


# ---- Hugging Face safetensors output -----------------------------------------------------------------------------
def _safetensors_bytes(items: List[Tuple[str, np.ndarray, str]]) -> bytes:
    header, offset, blobs = {}, 0, []
    for name, arr, tag in items:
        blob = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": tag, "shape": list(arr.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    header["__metadata__"] = {"format": "pt"}  # transformers refuses safetensors files without it
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the spec aligns the data start to 8 bytes
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def write_hf_safetensors(tensors: Iterable[NamedArray], out_dir: str, config: Optional[dict] = None,
                         dtype: str = "fp32", max_shard_bytes: int = 5 << 30) -> Dict[str, int]:
    """Write an HF folder: ``model.safetensors`` or ``model-0000k-of-0000n.safetensors`` + index, and
    ``config.json``. Each shard is written atomically; the index last."""
    check_dtype(dtype)
    os.makedirs(out_dir, exist_ok=True)
    shards: List[Tuple[str, List[str]]] = []
    pending, pending_bytes, total, count = [], 0, 0, 0

    def flush():
        nonlocal pending, pending_bytes
        if pending:
            tmp_name = f".shard-{len(shards):05d}.tmp.safetensors"
            with atomic_open(os.path.join(out_dir, tmp_name), "wb") as f:
                f.write(_safetensors_bytes(pending))
            shards.append((tmp_name, [n for n, _, _ in pending]))
            pending, pending_bytes = [], 0

    for name, arr in tensors:
        if dtype == "bf16" and np.issubdtype(arr.dtype, np.floating):
            arr, tag = fp32_to_bf16_bits(arr.astype(np.float32, copy=False)), "BF16"
        else:
            arr = cast_float(arr, dtype)
            if arr.dtype not in _NP_TO_ST:
                raise CheckpointError(f"{out_dir}: tensor {name!r} has dtype {arr.dtype}, which safetensors lacks")
            tag = _NP_TO_ST[arr.dtype]
        if pending and pending_bytes + arr.nbytes > max_shard_bytes:
            flush()
        pending.append((name, arr, tag))
        pending_bytes += arr.nbytes
        total += arr.nbytes
        count += 1
    flush()
    if len(shards) == 1:
        os.replace(os.path.join(out_dir, shards[0][0]), os.path.join(out_dir, SAFE_SINGLE))
    else:
        weight_map = {}
        for k, (tmp_name, names) in enumerate(shards):
            final = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
            os.replace(os.path.join(out_dir, tmp_name), os.path.join(out_dir, final))
            weight_map.update({n: final for n in names})
        atomic_write_text(os.path.join(out_dir, SAFE_INDEX),
                          json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    if config is not None:
        atomic_write_text(os.path.join(out_dir, "config.json"), json.dumps(config, indent=2, sort_keys=True))
    return {"tensors": count, "bytes": total, "shards": len(shards)}


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---- MindSpore cells ---------------------------------------------------------------------------------------------
def parameter_shapes(cell) -> Dict[str, Tuple[int, ...]]:
    """``{name: shape}`` as ``cell.parameters_and_names()`` gives them (the names a ``.ckpt`` must use)."""
    return {name: tuple(p.shape) for name, p in cell.parameters_and_names()}


def assign_parameters(cell, tensors: Iterable[NamedArray], source: str = "checkpoint") -> int:
    """Copy ``(name, array)`` pairs into ``cell`` (names and shapes already checked by a weight map), casting to
    each parameter's dtype. Returns the number of parameters set."""
    import mindspore as ms

    params = dict(cell.parameters_and_names())
    count = 0
    for name, arr in tensors:
        if name not in params:
            raise CheckpointError(f"{source}: the model has no parameter {name!r}")
        p = params[name]
        value = ms.Tensor(np.ascontiguousarray(arr, dtype=np.float32) if np.issubdtype(arr.dtype, np.floating)
                          else arr)
        p.set_data(value.astype(p.dtype))
        count += 1
    return count
