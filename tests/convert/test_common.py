"""Checkpoint readers/writers and the two-way rule engine, on hand-made files in the real on-disk formats."""
import json
import os

import mindspore as ms
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

from lman_ms.convert.common import (CheckpointError, bf16_bits_to_fp32, cast_float, find_checkpoint_files,
                                    fp32_to_bf16_bits, iter_hf_tensors, iter_ms_checkpoint, iter_safetensors,
                                    iter_torch_bin, write_hf_safetensors, write_ms_checkpoint)
from lman_ms.convert.mapping import WeightMap, concat, rename, unsqueeze


def test_safetensors_reader_dtypes(tmp_path):
    path = str(tmp_path / "model.safetensors")
    safetensors.numpy.save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3),
                                 "b": np.array([1, -2], np.int64), "c": np.array([0.5, 2.0], np.float16)}, path)
    got = dict(iter_safetensors(path))
    assert got["a"].tolist() == [[0, 1, 2], [3, 4, 5]] and got["a"].dtype == np.float32
    assert got["b"].tolist() == [1, -2] and got["b"].dtype == np.int64
    assert got["c"].tolist() == [0.5, 2.0] and got["c"].dtype == np.float16


def test_bf16_is_upcast_exactly(tmp_path):
    path = str(tmp_path / "model.safetensors")
    values = [1.5, -2.25, 3.0, 0.0078125]  # all exact in bf16
    safetensors.torch.save_file({"w": torch.tensor(values, dtype=torch.bfloat16)}, path)
    (name, arr), = iter_safetensors(path)
    assert name == "w" and arr.dtype == np.float32 and arr.tolist() == values


def test_bf16_rounding_is_nearest_even():
    # 1 + 2^-8 lies halfway between bf16 1.0 (0x3F80) and 1 + 2^-7 (0x3F81): ties go to the even 0x3F80;
    # 1 + 3*2^-8 lies halfway between 0x3F81 and 0x3F82: goes to 0x3F82.
    x = np.array([1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, -2.0, 1.0 + 2 ** -8 + 2 ** -20], np.float32)
    assert fp32_to_bf16_bits(x).tolist() == [0x3F80, 0x3F82, 0xC000, 0x3F81]
    rnd = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    ref = torch.from_numpy(rnd).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(fp32_to_bf16_bits(rnd), ref)
    assert np.array_equal(bf16_bits_to_fp32(ref), torch.from_numpy(rnd).to(torch.bfloat16).float().numpy())


def test_torch_bin_reader(tmp_path):
    path = str(tmp_path / "pytorch_model.bin")
    torch.save({"w": torch.tensor([[1.0, 2.0]]), "h": torch.tensor([0.5], dtype=torch.bfloat16)}, path)
    got = dict(iter_torch_bin(path))
    assert got["w"].tolist() == [[1.0, 2.0]] and got["h"].dtype == np.float32 and got["h"].tolist() == [0.5]


def test_legacy_torch_format_is_read(tmp_path):
    path = str(tmp_path / "pytorch_model.bin")  # the pre-1.6 format cannot be memory-mapped
    torch.save({"w": torch.tensor([3.0, 4.0])}, path, _use_new_zipfile_serialization=False)
    assert [(n, a.tolist()) for n, a in iter_torch_bin(path)] == [("w", [3.0, 4.0])]


def test_truncated_safetensors_is_an_error(tmp_path):
    path = str(tmp_path / "model.safetensors")
    safetensors.numpy.save_file({"w": np.ones((64,), np.float32)}, path)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 10)
    with pytest.raises(CheckpointError, match=r"model.safetensors: tensor 'w' extends past the end"):
        list(iter_safetensors(path))


class _Exploit:
    """Unpickling this would create a folder: proof that code ran."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.makedirs, (self.target,)


def test_malicious_bin_is_refused_without_running_code(tmp_path):
    path = str(tmp_path / "pytorch_model.bin")
    target = str(tmp_path / "pwned")
    torch.save({"w": torch.zeros(2), "x": _Exploit(target)}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        list(iter_torch_bin(path))
    assert not os.path.exists(target)


def test_bin_with_non_tensor_values_is_refused(tmp_path):
    path = str(tmp_path / "pytorch_model.bin")
    torch.save({"w": torch.zeros(2), "step": 7}, path)  # ints pass weights_only, but are not weights
    with pytest.raises(CheckpointError, match=r"not named tensors: \['step'\]"):
        list(iter_torch_bin(path))


def test_sharded_index_in_order_and_missing_shard(tmp_path):
    for i, name in enumerate(["b.safetensors", "a.safetensors"]):
        safetensors.numpy.save_file({f"t{i}": np.full((2,), i, np.float32)}, str(tmp_path / name))
    index = {"metadata": {}, "weight_map": {"t0": "b.safetensors", "t1": "a.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert [os.path.basename(p) for p in find_checkpoint_files(str(tmp_path))] == ["b.safetensors", "a.safetensors"]
    assert [(n, a.tolist()) for n, a in iter_hf_tensors(str(tmp_path), False)] == [("t0", [0, 0]), ("t1", [1, 1])]
    os.remove(tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="a.safetensors"):
        find_checkpoint_files(str(tmp_path))


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        find_checkpoint_files(str(tmp_path))


def test_ms_checkpoint_written_in_parts_loads_whole(tmp_path):
    path = str(tmp_path / "out.ckpt")
    tensors = [(f"p{i}", np.full((3, 4), i, np.float32)) for i in range(5)]
    # written one tensor at a time (flush_bytes is accepted but no longer used)
    summary = write_ms_checkpoint(iter(tensors), path, "fp32", flush_bytes=100)
    assert summary == {"tensors": 5, "bytes": 5 * 48}
    loaded = ms.load_checkpoint(path)
    assert sorted(loaded) == [f"p{i}" for i in range(5)]
    assert all(np.array_equal(loaded[f"p{i}"].asnumpy(), np.full((3, 4), i)) for i in range(5))
    assert os.listdir(tmp_path) == ["out.ckpt"]  # no part files or temp files left


def test_ms_checkpoint_dtypes(tmp_path):
    path = str(tmp_path / "out.ckpt")
    write_ms_checkpoint([("w", np.array([1.0 + 2 ** -8, 3.0], np.float32)), ("ids", np.array([4], np.int32))],
                        path, "bf16")
    loaded = ms.load_checkpoint(path)
    assert loaded["w"].dtype == ms.bfloat16 and loaded["ids"].dtype == ms.int32
    assert dict(iter_ms_checkpoint(path))["w"].tolist() == [1.0, 3.0]  # RNE, read back as fp32
    write_ms_checkpoint([("w", np.array([0.5], np.float32))], path, "fp16")
    assert ms.load_checkpoint(path)["w"].dtype == ms.float16


def _ms_reference(tensors, dtype):
    """What the converter used to do: mindspore.save_checkpoint of ms.Tensors cast like the writer casts."""
    params = []
    for name, arr in tensors:
        t = ms.Tensor(np.ascontiguousarray(cast_float(arr, dtype)))
        if dtype == "bf16" and np.issubdtype(arr.dtype, np.floating):
            t = t.astype(ms.bfloat16)
        params.append({"name": name, "data": t})
    return params


def _edge_tensors():
    rng = np.random.default_rng(1)
    ties = np.array([1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, -0.0, np.inf, -np.inf, 65504.0, 1e-8, 3.3e38], np.float32)
    return [("model.layers.0.weight", rng.standard_normal((200, 3)).astype(np.float32)),  # dims/lengths > 127
            ("ties", ties),
            ("scalar", np.array(0.25, np.float32)),  # 0-d: stored as (1,), as the converter always did
            ("one", np.array([7.5], np.float64)),
            ("", np.arange(3, dtype=np.float16)),  # empty name is still written (as MindSpore does)
            ("n" * 300 + "ü", np.ones((1, 1), np.float32)),  # long, non-ASCII name
            ("ids", np.arange(-3, 3, dtype=np.int64)), ("i32", np.array([5], np.int32)),
            ("mask", np.array([True, False])), ("u8", np.array(9, np.uint8))]


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # 3.3e38 -> fp16 inf, on purpose
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_ms_checkpoint_byte_identical_to_mindspore(tmp_path, dtype):
    tensors = _edge_tensors()
    ours, ref = str(tmp_path / "ours.ckpt"), str(tmp_path / "ref.ckpt")
    summary = write_ms_checkpoint(iter(tensors), ours, dtype)
    params = _ms_reference(tensors, dtype)
    ms.save_checkpoint(params, ref)
    with open(ours, "rb") as a, open(ref, "rb") as b:
        assert a.read() == b.read()
    assert summary == {"tensors": len(tensors), "bytes": sum(p["data"].nbytes for p in params)}
    loaded = ms.load_checkpoint(ours)
    assert list(loaded) == [n for n, _ in tensors]
    assert loaded["scalar"].shape == (1,) and loaded["u8"].shape == (1,)
    for p in params:
        got = loaded[p["name"]]
        assert got.dtype == p["data"].dtype and got.shape == p["data"].shape
        assert got.asnumpy().tobytes() == p["data"].asnumpy().tobytes()


def test_ms_checkpoint_bf16_nan_matches_mindspore(tmp_path):
    tensors = [("w", np.array([np.nan, -np.nan, 1.0], np.float32))]
    ours = str(tmp_path / "ours.ckpt")
    write_ms_checkpoint(tensors, ours, "bf16")
    got = ms.load_checkpoint(ours)["w"]
    assert got.dtype == ms.bfloat16
    assert np.isnan(got.float().asnumpy()[:2]).all() and got.float().asnumpy()[2] == 1.0


def test_ms_checkpoint_large_tensor_sliced_like_mindspore(tmp_path, monkeypatch):
    # MindSpore writes a tensor in values of 1024 * SLICE_SIZE bytes (512 MiB); shrink both sides to 1 KiB
    import mindspore.train.serialization as serialization

    import lman_ms.convert.common as common

    assert common._MS_CHUNK_BYTES == 1024 * serialization.SLICE_SIZE
    monkeypatch.setattr(serialization, "SLICE_SIZE", 1)
    monkeypatch.setattr(common, "_MS_CHUNK_BYTES", 1024)
    big = np.arange(40 * 25, dtype=np.float32).reshape(40, 25)  # 4000 bytes: 4 values
    tensors = [("big", big), ("exact", np.zeros(256, np.float32)), ("small", big[0])]  # exact: one full chunk
    ours, ref = str(tmp_path / "ours.ckpt"), str(tmp_path / "ref.ckpt")
    write_ms_checkpoint(tensors, ours, "fp32")
    ms.save_checkpoint(_ms_reference(tensors, "fp32"), ref)
    with open(ours, "rb") as a, open(ref, "rb") as b:
        data = a.read()
        assert data == b.read()
    assert data.count(b"big") == 4
    got = dict(iter_ms_checkpoint(ours))
    assert np.array_equal(got["big"], big) and np.array_equal(got["small"], big[0])


def test_ms_checkpoint_keeps_empty_tensor(tmp_path):
    # mindspore.save_checkpoint silently drops a tensor without elements; the writer keeps it
    path = str(tmp_path / "out.ckpt")
    write_ms_checkpoint([("e", np.zeros((0, 3), np.float32)), ("w", np.ones(2, np.float32))], path, "fp16")
    loaded = ms.load_checkpoint(path)
    assert list(loaded) == ["e", "w"]
    assert loaded["e"].shape == (0, 3) and loaded["e"].dtype == ms.float16
    assert dict(iter_ms_checkpoint(path))["e"].shape == (0, 3)


def test_ms_checkpoint_unsupported_dtype_is_named(tmp_path):
    path = str(tmp_path / "out.ckpt")
    with pytest.raises(CheckpointError, match=r"out.ckpt: parameter 'txt' has dtype <U2"):
        write_ms_checkpoint([("ok", np.ones(1, np.float32)), ("txt", np.array(["ab"]))], path)
    assert not os.path.exists(path) and os.listdir(tmp_path) == []


def test_ms_checkpoint_duplicate_name_is_an_error(tmp_path):
    path = str(tmp_path / "out.ckpt")
    with pytest.raises(CheckpointError, match=r"parameter 'w' written twice"):
        write_ms_checkpoint([("w", np.ones(1, np.float32)), ("w", np.ones(1, np.float32))], path)
    assert os.listdir(tmp_path) == []


def test_ms_checkpoint_failure_keeps_old_file(tmp_path):
    path = str(tmp_path / "out.ckpt")
    write_ms_checkpoint([("old", np.ones(2, np.float32))], path)

    def broken():
        yield "new", np.zeros(2, np.float32)
        raise CheckpointError("source went bad")

    with pytest.raises(CheckpointError, match="source went bad"):
        write_ms_checkpoint(broken(), path)
    assert list(ms.load_checkpoint(path)) == ["old"]
    assert os.listdir(tmp_path) == ["out.ckpt"]


def test_hf_safetensors_writer_shards_and_index(tmp_path):
    tensors = [("a", np.ones((4, 4), np.float32)), ("b", np.arange(3, dtype=np.int64)),
               ("c", np.full((8,), 1.5, np.float32))]
    summary = write_hf_safetensors(iter(tensors), str(tmp_path), {"model_type": "x"}, max_shard_bytes=64)
    assert summary == {"tensors": 3, "bytes": 64 + 24 + 32, "shards": 2}
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["weight_map"] == {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors",
                                   "c": "model-00002-of-00002.safetensors"}
    assert index["metadata"]["total_size"] == 120
    # the reference library reads our files
    second = safetensors.numpy.load_file(str(tmp_path / "model-00002-of-00002.safetensors"))
    assert second["b"].tolist() == [0, 1, 2] and second["c"].tolist() == [1.5] * 8
    assert json.loads((tmp_path / "config.json").read_text()) == {"model_type": "x"}


def test_hf_safetensors_writer_bf16(tmp_path):
    write_hf_safetensors([("w", np.array([1.0 + 3 * 2 ** -8, -2.0], np.float32))], str(tmp_path), dtype="bf16")
    loaded = safetensors.torch.load_file(str(tmp_path / "model.safetensors"))
    assert loaded["w"].dtype == torch.bfloat16 and loaded["w"].float().tolist() == [1.0 + 2 ** -6, -2.0]


# ---- rule engine -------------------------------------------------------------------------------------------------
def _toy_map():
    return WeightMap([rename("emb", "embed.weight"),
                      concat("blocks.{i}.qkv", "layers.{i}.q", "layers.{i}.k", "layers.{i}.v"),
                      unsqueeze("cls", "class_embedding", leading=2)], ignore_hf=[r"layers\.\d+\.buffer"])


def test_rules_both_ways_with_groups_split_across_shards():
    q, k, v = (np.full((2, 3), x, np.float32) for x in (1, 2, 3))
    hf = [("layers.0.q", q), ("embed.weight", np.ones((5, 3), np.float32)), ("layers.0.buffer", np.zeros(1)),
          ("class_embedding", np.array([7.0, 8.0, 9.0], np.float32)), ("layers.0.v", v), ("layers.0.k", k)]
    expected = {"emb": (5, 3), "blocks.0.qkv": (6, 3), "cls": (1, 1, 3)}
    ms_out = dict(_toy_map().to_ms(iter(hf), expected))
    assert ms_out["blocks.0.qkv"][:, 0].tolist() == [1, 1, 2, 2, 3, 3]
    assert ms_out["cls"].tolist() == [[[7.0, 8.0, 9.0]]]
    back = dict(_toy_map().to_hf(iter(ms_out.items()), expected))
    assert sorted(back) == ["class_embedding", "embed.weight", "layers.0.k", "layers.0.q", "layers.0.v"]
    assert all(np.array_equal(back[n], a) for n, a in hf if n in back)


def test_unmapped_and_missing_keys_are_listed():
    hf = [("embed.weight", np.ones((5, 3), np.float32)), ("layers.0.q", np.ones((2, 3), np.float32)),
          ("surprise.weight", np.ones(1)), ("another.bias", np.ones(1))]
    expected = {"emb": (5, 3), "blocks.0.qkv": (6, 3), "cls": (1, 1, 3)}
    with pytest.raises(CheckpointError) as err:
        list(_toy_map().to_ms(iter(hf), expected, source="ckpt_dir"))
    msg = str(err.value)
    assert msg.startswith("ckpt_dir: ")
    assert "2 key(s) with no mapping rule: surprise.weight, another.bias" in msg
    assert "missing part(s): layers.0.k, layers.0.v" in msg
    assert "2 model parameter(s) left without a value: blocks.0.qkv, cls" in msg


def test_wrong_shape_names_key_and_both_shapes():
    with pytest.raises(CheckpointError, match=r"embed.weight -> 'emb': checkpoint gives \(4, 3\), model expects "
                                              r"\(5, 3\)"):
        list(_toy_map().to_ms(iter([("embed.weight", np.ones((4, 3)))]), {"emb": (5, 3)}, source="x"))


def test_duplicate_key_is_an_error():
    hf = [("embed.weight", np.ones((5, 3))), ("embed.weight", np.ones((5, 3)))]
    with pytest.raises(CheckpointError, match="'embed.weight' appears twice"):
        list(_toy_map().to_ms(iter(hf)))


def test_unequal_qkv_parts_are_an_error():
    hf = [("layers.1.q", np.ones((2, 3))), ("layers.1.k", np.ones((1, 3))), ("layers.1.v", np.ones((2, 3)))]
    with pytest.raises(CheckpointError, match=r"^shard_3: layers.1.q, layers.1.k, layers.1.v -> 'blocks.1.qkv': "
                                              r"parts have different shapes \[\(2, 3\), \(1, 3\), \(2, 3\)\]"):
        list(_toy_map().to_ms(iter(hf), source="shard_3"))


def test_streamed_ms_checkpoint_reader_matches_mindspore(tmp_path):
    path = str(tmp_path / "m.ckpt")
    rng = np.random.default_rng(0)
    params = [{"name": "a", "data": ms.Tensor(rng.standard_normal((3, 5)).astype(np.float32))},
              {"name": "b", "data": ms.Tensor(np.array([1.5, -2.0], np.float32)).astype(ms.bfloat16)},
              {"name": "c", "data": ms.Tensor(np.arange(4, dtype=np.int64))},
              {"name": "d", "data": ms.Tensor(np.array(0.25, np.float16))}]
    ms.save_checkpoint(params, path)
    ours = list(iter_ms_checkpoint(path))
    assert [n for n, _ in ours] == ["a", "b", "c", "d"]
    ref = ms.load_checkpoint(path)
    got = dict(ours)
    assert np.array_equal(got["a"], ref["a"].asnumpy())
    assert got["b"].dtype == np.float32 and got["b"].tolist() == [1.5, -2.0]
    assert got["c"].dtype == np.int64 and got["c"].tolist() == [0, 1, 2, 3]
    assert got["d"].dtype == np.float16 and got["d"].reshape(-1).tolist() == [0.25]


def test_ms_checkpoint_reader_rejects_other_files(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(CheckpointError, match=r"model.ckpt: not a MindSpore checkpoint"):
        list(iter_ms_checkpoint(str(path)))


def test_ms_checkpoint_reader_joins_slices(tmp_path, monkeypatch):
    # MindSpore splits tensors above SLICE_SIZE KiB (512 MiB) into consecutive values; shrink it to 1 KiB
    import mindspore.train.serialization as serialization

    monkeypatch.setattr(serialization, "SLICE_SIZE", 1)
    big = np.arange(40 * 25, dtype=np.float32).reshape(40, 25)  # 4000 bytes: 4 slices
    path = str(tmp_path / "sliced.ckpt")
    ms.save_checkpoint([{"name": "big", "data": ms.Tensor(big)}, {"name": "small", "data": ms.Tensor(big[0])}], path)
    with open(path, "rb") as f:
        assert f.read().count(b"big") == 4  # one name per slice
    got = dict(iter_ms_checkpoint(path))
    assert np.array_equal(got["big"], big) and np.array_equal(got["small"], big[0])
