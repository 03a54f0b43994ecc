"""The GGUF header reader: agreement with gguf-py on real files, and hostile files refused quickly."""

from __future__ import annotations

import math
import os
import struct
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.errors import InputError
from planner.limits import MAX_GGUF_METADATA_KEYS, MAX_GGUF_STRING_BYTES
from planner.loaders.gguf_header import GGML_TYPES, MAX_ARRAY_DEPTH, GGUFArray, read_gguf_header

gguf = pytest.importorskip("gguf")

F32, Q8_0 = 0, 8
UINT32, FLOAT32, BOOL, STRING, ARRAY, FLOAT64 = 4, 6, 7, 8, 9, 12


# Hand-built files: each piece as the format lays it out.
def text(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str | bytes, vtype: int, payload: bytes) -> bytes:
    return text(key) + struct.pack("<I", vtype) + payload


def u32(key: str, value: int) -> bytes:
    return kv(key, UINT32, struct.pack("<I", value))


def array(item_type: int, items: list[bytes]) -> bytes:
    return struct.pack("<IQ", item_type, len(items)) + b"".join(items)


def info(name: str, dims: tuple[int, ...], ggml_type: int = F32, offset: int = 0) -> bytes:
    return text(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, ggml_type, offset)


def build(kvs: Sequence[bytes] = (), infos: Sequence[bytes] = (), data: bytes = b"", *, version: int = 3,
          n_kv: int | None = None, n_tensors: int | None = None, alignment: int = 32) -> bytes:
    head = b"GGUF" + struct.pack("<IQQ", version, len(infos) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv)
    head += b"".join(kvs) + b"".join(infos)
    return head + b"\0" * (-len(head) % alignment) + data


def small_file() -> bytes:
    """A valid file with every kind of value and two tensors (F32 and Q8_0), no trailing padding."""
    kvs = [kv("general.architecture", STRING, text("llama")), u32("llama.block_count", 2),
           kv("llama.attention.head_count", ARRAY, array(UINT32, [struct.pack("<I", 4)] * 2)),
           kv("tokenizer.ggml.tokens", ARRAY, array(STRING, [text("a"), text("bc")])),
           kv("nested", ARRAY, array(ARRAY, [array(FLOAT32, [struct.pack("<f", 1.5)])])),
           kv("f", FLOAT64, struct.pack("<d", 0.25)), kv("b", BOOL, b"\x01")]
    infos = [info("a.weight", (4, 2)), info("b.weight", (32,), Q8_0, 32)]
    return build(kvs, infos, bytes(32 + 34))


def write(tmp_path: Path, content: bytes, name: str = "hostile.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def refused(path: Path, *fragments: str) -> str:
    with pytest.raises(InputError) as caught:
        read_gguf_header(path)
    message = str(caught.value)
    assert "\n" not in message and path.name in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def refused_quickly(path: Path, *fragments: str) -> str:
    """Refused in well under a second without allocating for the claimed items."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        message = refused(path, *fragments)
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < 1.0 and peak < 20 * 2**20, (elapsed, peak)
    return message


# Real files written by gguf-py, read by both readers.
def write_with_gguf_py(path: Path, alignment: int | None) -> None:
    writer = gguf.GGUFWriter(str(path), "llama")
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    writer.add_block_count(2)
    writer.add_embedding_length(64)
    writer.add_context_length(512)
    writer.add_rope_freq_base(10000.5)
    writer.add_key_value("llama.attention.head_count", [4, 8], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.UINT32)
    writer.add_key_value("llama.attention.sliding_window_pattern", [True, False], gguf.GGUFValueType.ARRAY)
    writer.add_token_list([f"tok{i}" for i in range(300)])
    writer.add_token_scores([float(i) for i in range(300)])
    writer.add_token_types([1] * 300)
    writer.add_array("test.long", list(range(5000)))
    writer.add_array("test.nested", [[1, 2], [3]])
    writer.add_int64("test.int64", -(2**40))
    writer.add_float64("test.float64", math.pi)
    writer.add_bool("test.bool", True)
    writer.add_string("test.name", "héllo")
    writer.add_tensor("output_norm.weight", np.zeros(64, dtype=np.float32))
    writer.add_tensor("blk.0.attn_norm.weight", np.zeros(64, dtype=np.float16))
    writer.add_tensor("token_embd.weight", np.zeros((300, 64 // 32 * 34), dtype=np.uint8),
                      raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("blk.0.ffn_up.weight", np.zeros((2, 128, 256 // 256 * 144), dtype=np.uint8),
                      raw_dtype=gguf.GGMLQuantizationType.Q4_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.parametrize("alignment", [None, 64])
def test_agrees_with_gguf_py(tmp_path: Path, alignment: int | None) -> None:
    path = tmp_path / "tiny.gguf"
    write_with_gguf_py(path, alignment)
    header, reader = read_gguf_header(path), gguf.GGUFReader(str(path))
    assert header.version == 3 and header.alignment == reader.alignment == (alignment or 32)
    assert header.data_offset == reader.data_offset
    fields = {name: field for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    assert list(header.metadata) == list(fields)
    for key, field in fields.items():
        value = header.metadata[key]
        if field.types[0] != gguf.GGUFValueType.ARRAY:
            assert value == field.contents() and type(value) is type(field.contents()), key
            continue
        assert isinstance(value, GGUFArray) and value.item_type == field.types[1].name, key
        if len(field.types) == 2:  # flat: one data part per item
            assert value.length == len(field.data), key
        if value.values is not None:
            assert list(value.values) == field.contents(), key
    arrays = header.metadata
    assert arrays["llama.attention.head_count"] == GGUFArray("UINT32", 2, (4, 8))
    assert arrays["tokenizer.ggml.tokens"] == GGUFArray("STRING", 300, None)
    assert arrays["test.long"] == GGUFArray("INT32", 5000, None)
    assert arrays["test.nested"] == GGUFArray("ARRAY", 2, None)
    assert [t.name for t in header.tensors] == [t.name for t in reader.tensors]
    for mine, theirs in zip(header.tensors, reader.tensors):
        assert mine.shape == tuple(int(x) for x in theirs.shape)
        assert mine.type_name == theirs.tensor_type.name
        assert (mine.n_elements, mine.n_bytes, mine.offset) == (theirs.n_elements, theirs.n_bytes, theirs.data_offset)
    assert header.tensors[3].shape == (256, 128, 2) and header.tensors[3].n_bytes == 2 * 128 * 144


def test_type_table_matches_gguf_py() -> None:
    theirs = {int(t): (t.name, *gguf.GGML_QUANT_SIZES[t]) for t in gguf.GGMLQuantizationType}
    assert {i: GGML_TYPES[i] for i in theirs if i in GGML_TYPES} == theirs
    assert set(theirs) <= set(GGML_TYPES)


def test_small_file_reads(tmp_path: Path) -> None:
    header = read_gguf_header(write(tmp_path, small_file(), "small.gguf"))
    assert header.metadata["nested"] == GGUFArray("ARRAY", 1, None)
    assert header.metadata["tokenizer.ggml.tokens"] == GGUFArray("STRING", 2, None)
    assert [(t.name, t.type_name, t.n_bytes, t.offset) for t in header.tensors] == [
        ("a.weight", "F32", 32, header.data_offset), ("b.weight", "Q8_0", 34, header.data_offset + 32)]
    assert header.data_offset % 32 == 0 and header.version == 3
    assert read_gguf_header(write(tmp_path, build(version=2), "v2.gguf")).version == 2


def test_every_truncation_is_an_input_error(tmp_path: Path) -> None:
    content = small_file()
    path = tmp_path / "cut.gguf"
    for end in range(len(content)):
        path.write_bytes(content[:end])
        refused(path)


def test_nan_and_odd_values_are_just_values(tmp_path: Path) -> None:
    path = write(tmp_path, build([kv("x.nan", FLOAT32, struct.pack("<f", math.nan)),
                                  kv("x.nan64", FLOAT64, struct.pack("<d", math.nan)),
                                  kv("llama.block_count", STRING, text("many"))]))
    metadata = read_gguf_header(path).metadata
    assert math.isnan(metadata["x.nan"]) and math.isnan(metadata["x.nan64"])
    assert metadata["llama.block_count"] == "many"


@pytest.mark.parametrize(("content", "fragment"), [
    (b"", "empty"), (b"GGML" + bytes(20), "not a GGUF file"), (b"GG", "not a GGUF file"),
    (build(version=1), "version 1"), (build(version=99), "version 99"), (build(version=3 << 24), "big-endian"),
])
def test_not_gguf(tmp_path: Path, content: bytes, fragment: str) -> None:
    refused(write(tmp_path, content), fragment)


def test_huge_claims_are_refused_at_once(tmp_path: Path) -> None:
    items = kv("tokenizer.ggml.scores", ARRAY, struct.pack("<IQ", FLOAT32, 10**7)) + bytes(250)
    refused_quickly(write(tmp_path, build([items])), "tokenizer.ggml.scores", "10,000,000", "8,388,608")
    fits_limit = kv("tokenizer.ggml.tokens", ARRAY, struct.pack("<IQ", STRING, 10**6)) + bytes(250)
    refused_quickly(write(tmp_path, build([fits_limit])), "tokenizer.ggml.tokens", "1,000,000")
    refused_quickly(write(tmp_path, build(n_kv=10**6) + bytes(250)),
                    f"metadata claims 1,000,000 keys; the limit is {MAX_GGUF_METADATA_KEYS:,}")
    refused_quickly(write(tmp_path, build(n_kv=5000) + bytes(250)), "5,000 keys")
    refused_quickly(write(tmp_path, build(n_tensors=10**9) + bytes(250)), "1,000,000,000 tensors", "500,000")
    refused_quickly(write(tmp_path, build(n_tensors=400_000) + bytes(250)), "400,000 tensors")
    key = struct.pack("<Q", 2**60) + bytes(250)
    refused_quickly(write(tmp_path, build(n_kv=1, alignment=1) + key), f"{2**60:,} bytes", f"{MAX_GGUF_STRING_BYTES:,}")
    value = kv("general.name", STRING, struct.pack("<Q", 2**60))
    refused_quickly(write(tmp_path, build([value])), "general.name", "limit")
    token = kv("tokenizer.ggml.tokens", ARRAY, array(STRING, [struct.pack("<Q", 2**60)]))
    refused_quickly(write(tmp_path, build([token])), "tokenizer.ggml.tokens", "limit")


def test_nesting_is_bounded(tmp_path: Path) -> None:
    def nested(depth: int) -> bytes:
        inner = array(UINT32, [struct.pack("<I", 1)])
        for _ in range(depth - 1):
            inner = array(ARRAY, [inner])
        return inner
    ok = read_gguf_header(write(tmp_path, build([kv("deep", ARRAY, nested(MAX_ARRAY_DEPTH))])))
    assert ok.metadata["deep"] == GGUFArray("ARRAY", 1, None)
    refused(write(tmp_path, build([kv("deep", ARRAY, nested(MAX_ARRAY_DEPTH + 1))])), "deep", "nested")


@pytest.mark.parametrize(("kvs", "fragments"), [
    ([kv("x.odd", 13, bytes(8))], ["x.odd", "unknown value type 13"]),
    ([kv("x.odd", ARRAY, struct.pack("<IQ", 99, 1) + bytes(8))], ["x.odd", "item type 99"]),
    ([u32("x.same", 1), u32("x.same", 2)], ["x.same", "duplicate"]),
    ([kv(b"bad\xffkey", UINT32, bytes(4))], ["bad\ufffdkey", "UTF-8"]),
    ([kv("general.name", STRING, text(b"\xc3("))], ["general.name", "UTF-8"]),
    ([u32("general.alignment", 0)], ["general.alignment", "power of two"]),
    ([u32("general.alignment", 3)], ["general.alignment", "power of two"]),
    ([kv("general.alignment", STRING, text("32"))], ["general.alignment", "UINT32"]),
    ([kv("general.alignment", FLOAT32, struct.pack("<f", 32.0))], ["general.alignment", "UINT32"]),
])
def test_bad_metadata(tmp_path: Path, kvs: list[bytes], fragments: list[str]) -> None:
    refused(write(tmp_path, build(kvs, [info("t", (8,))], bytes(32))), *fragments)


@pytest.mark.parametrize(("infos", "data", "fragments"), [
    ([info("t.odd", (8,), 99)], 32, ["t.odd", "unknown ggml type 99"]),
    ([info("t.odd", (8,), 31)], 32, ["t.odd", "unknown ggml type 31"]),
    ([info("t.zero", ())], 32, ["t.zero", "0 dimensions"]),
    ([info("t.nine", (1,) * 9)], 32, ["t.nine", "9 dimensions"]),
    ([info("t.empty", (8, 0))], 32, ["t.empty", "dimension of 0"]),
    ([info("t.huge", (2**32, 2**32))], 32, ["t.huge", "2^53"]),
    ([info("t.huge", (2**63, 2**63, 2**63, 2**63))], 32, ["t.huge", "2^53"]),
    ([info("t.rows", (48, 2), Q8_0)], 128, ["t.rows", "Q8_0", "48"]),
    ([info("t.shifted", (8,), F32, 4)], 64, ["t.shifted", "not a multiple of the alignment"]),
    ([info("t.long", (8,), F32, 0)], 16, ["t.long", "past the end"]),
    ([info("t.far", (8,), F32, 2**62)], 32, ["t.far", "past the end"]),
    ([info("t.a", (16,)), info("t.b", (8,), F32, 32)], 128, ["t.b", "overlap", "t.a"]),
    ([info("t.a", (8,)), info("t.a", (8,), F32, 32)], 64, ["t.a", "duplicate"]),
])
def test_bad_tensors(tmp_path: Path, infos: list[bytes], data: int, fragments: list[str]) -> None:
    refused(write(tmp_path, build([u32("general.alignment", 32)], infos, bytes(data))), *fragments)


def test_fifo_and_device_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    refused(fifo, "FIFO")
    with pytest.raises(InputError, match="character device"):
        read_gguf_header(Path("/dev/zero"))
    refused(tmp_path, "folder")


_MUTATION = st.tuples(st.sampled_from(["flip", "insert", "delete"]), st.integers(0, 10**6), st.integers(0, 255))


@settings(max_examples=200, deadline=None)
@given(st.lists(_MUTATION, min_size=1, max_size=4))
def test_mutations_never_escape(mutations: list[tuple[str, int, int]]) -> None:
    content = bytearray(small_file())
    for kind, where, byte in mutations:
        at = where % (len(content) + 1)
        if kind == "insert":
            content[at:at] = bytes([byte])
        elif at < len(content):
            content[at:at + 1] = b"" if kind == "delete" else bytes([content[at] ^ (byte or 1)])
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), bytes(content), "mutated.gguf")
        try:
            read_gguf_header(path)
        except InputError as exc:
            assert "mutated.gguf" in str(exc) and "\n" not in str(exc)
