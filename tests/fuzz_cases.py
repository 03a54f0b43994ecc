"""Hostile inputs for tests/test_fuzz.py: builders of config.json files, safetensors and GGUF
checkpoints, inventories, saved detector outputs and plans, and the table of hand-made cases.

Every case writes its files under the test's tmp_path and returns the command line to run. Its
expectation is the documented contract of planner/cli/main.py: the exit code, no traceback, and
for an error exactly one line on stderr, starting "error:", that names the field, option or file
at fault (each `expect` fragment must appear in that line; "{tmp}" stands for tmp_path).
"""

from __future__ import annotations

import functools
import json
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
INVENTORIES = ROOT / "inventories"
HOMELAB = str(INVENTORIES / "homelab.yaml")
DETECT_DATA = ROOT / "tests" / "data" / "detect"

Builder = Callable[[Path], Sequence[str]]


@dataclass(frozen=True)
class Outcome:
    """What one run of the command line produced."""

    code: int
    stdout: str
    stderr: str
    elapsed: float  # wall-clock seconds
    exception: BaseException | None = None
    cpu: float | None = None  # CPU seconds of a subprocess run, when it reported them


@dataclass(frozen=True)
class Case:
    """One hand-made input: the files it writes, the command, and what must come out."""

    id: str
    build: Builder
    code: int = 2
    expect: tuple[str, ...] = ()
    heavy: bool = False  # run in a subprocess with a time and memory cap
    check: Callable[[Path, Outcome], None] | None = None


def fixed(*args: str) -> Builder:
    """A command that needs no files ("{tmp}" in an argument becomes tmp_path)."""
    return lambda tmp: [a.replace("{tmp}", str(tmp)) for a in args]


def case(id: str, build: Builder, *expect: str, code: int = 2, heavy: bool = False,
         check: Callable[[Path, Outcome], None] | None = None) -> Case:
    return Case(id=id, build=build, code=code, expect=tuple(expect), heavy=heavy, check=check)


# ----------------------------------------------------------------------------- config.json

DROP = object()  # an override that removes the key


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """A small valid Llama config.json (the same as tests/conftest.py's tiny_config)."""
    config: dict[str, Any] = {
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100, "max_position_embeddings": 512,
        "tie_word_embeddings": False,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not DROP}


class Raw:
    """A JSON value written verbatim (NaN, Infinity, or anything json.dumps would not produce)."""

    def __init__(self, text: str) -> None:
        self.text = text


def config_text(config: dict[str, Any]) -> str:
    """JSON for a config whose values may be Raw, one key per line (so errors can give a line)."""
    raws: dict[str, str] = {}

    def encode(value: Any) -> Any:
        if isinstance(value, Raw):
            marker = f"@@raw{len(raws)}@@"
            raws[marker] = value.text
            return marker
        if isinstance(value, dict):
            return {k: encode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [encode(v) for v in value]
        return value

    text = json.dumps(encode(config), indent=2)
    for marker, raw in raws.items():
        text = text.replace(f'"{marker}"', raw)
    return text


def write_config_file(tmp: Path, content: str | bytes | dict[str, Any], folder: str = "m") -> Path:
    path = tmp / folder / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, dict):
        content = config_text(content)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def config_case(id: str, content: str | bytes | dict[str, Any], *expect: str, heavy: bool = False,
                code: int = 2) -> Case:
    """`plan memory --model <tmp>/m/config.json`; the message must also name the file."""

    def build(tmp: Path) -> list[str]:
        return ["memory", "--model", str(write_config_file(tmp, content))]

    return case(id, build, *(("{tmp}/m/config.json",) if code == 2 else ()), *expect, code=code, heavy=heavy)


def deep_json(depth: int, inner: str = "") -> str:
    return "[" * depth + inner + "]" * depth


# ----------------------------------------------------------------------------- safetensors

H, I, V, L = 64, 128, 100, 2  # the tiny checkpoint's shapes


def checkpoint_config(**overrides: Any) -> dict[str, Any]:
    """config.json of the tiny safetensors checkpoint (two layers)."""
    return tiny_config(num_hidden_layers=L, torch_dtype="float16", **overrides)


def tensor_entries(dtype: str = "F16") -> dict[str, dict[str, Any]]:
    """The tiny Llama's tensors as safetensors header entries, packed back to back."""
    shapes: dict[str, list[int]] = {"model.embed_tokens.weight": [V, H], "lm_head.weight": [V, H], "model.norm.weight": [H]}
    for i in range(L):
        p = f"model.layers.{i}."
        shapes.update({p + "self_attn.q_proj.weight": [H, H], p + "self_attn.k_proj.weight": [32, H],
                       p + "self_attn.v_proj.weight": [32, H], p + "self_attn.o_proj.weight": [H, H],
                       p + "mlp.gate_proj.weight": [I, H], p + "mlp.up_proj.weight": [I, H],
                       p + "mlp.down_proj.weight": [H, I], p + "input_layernorm.weight": [H],
                       p + "post_attention_layernorm.weight": [H]})
    entries, offset = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape) * 2
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    return entries


def data_bytes(entries: dict[str, Any]) -> int:
    ends = [e["data_offsets"][1] for k, e in entries.items() if k != "__metadata__" and isinstance(e, dict)
            and isinstance(e.get("data_offsets"), list) and len(e["data_offsets"]) == 2
            and all(isinstance(x, int) for x in e["data_offsets"])]
    return max(ends, default=0)


def safetensors_bytes(header: dict[str, Any] | str | bytes, data: int | None = None,
                      length: int | None = None) -> bytes:
    """A safetensors file: 8-byte header length, the header (a dict, or raw JSON text), `data` zero bytes."""
    if isinstance(header, dict):
        raw = json.dumps(header).encode()
        data = data_bytes(header) if data is None else data
    else:
        raw = header.encode() if isinstance(header, str) else header
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw) if length is None else length) + raw + bytes(data or 0)


def write_checkpoint(tmp: Path, *, config: dict[str, Any] | None = None, header: Any = None, data: int | None = None,
                     index: dict[str, Any] | str | None = None, shard: str = "model.safetensors",
                     length: int | None = None) -> Path:
    """A model folder: config.json, one safetensors shard and optionally an index."""
    folder = tmp / "ckpt"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(config_text(config or checkpoint_config()))
    header = tensor_entries() if header is None else header
    (folder / shard).write_bytes(safetensors_bytes(header, data, length))
    if index is not None:
        text = index if isinstance(index, str) else json.dumps(index)
        (folder / "model.safetensors.index.json").write_text(text)
    return folder


def checkpoint_case(id: str, *expect: str, target: str = "", heavy: bool = False, check=None, code: int = 2,
                    **kwargs: Any) -> Case:
    """`plan memory --model <tmp>/ckpt[/target]` on a checkpoint written by write_checkpoint(**kwargs)."""

    def build(tmp: Path) -> list[str]:
        folder = write_checkpoint(tmp, **kwargs)
        return ["memory", "--model", str(folder / target) if target else str(folder)]

    return case(id, build, *expect, heavy=heavy, check=check, code=code)


def index_of(weight_map: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {}, "weight_map": weight_map}


# ----------------------------------------------------------------------------- GGUF
# Each piece as ggml docs/gguf.md lays it out (little-endian).
G_UINT32, G_INT32, G_FLOAT32, G_BOOL, G_STRING, G_ARRAY, G_UINT64, G_FLOAT64 = 4, 5, 6, 7, 8, 9, 10, 12
GGML_F32 = 0


def g_text(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("<Q", len(raw)) + raw


def g_kv(key: str, vtype: int, payload: bytes) -> bytes:
    return g_text(key) + struct.pack("<I", vtype) + payload


def g_u32(key: str, value: int) -> bytes:
    return g_kv(key, G_UINT32, struct.pack("<I", value))


def g_info(name: str, dims: Sequence[int], offset: int, ggml_type: int = GGML_F32) -> bytes:
    return g_text(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, ggml_type, offset)


def gguf_metadata(**replace: bytes | None) -> dict[str, bytes]:
    """The tiny Llama's metadata key/values (raw), with some replaced (bytes) or removed (None)."""
    kvs = {
        "general.architecture": g_kv("general.architecture", G_STRING, g_text("llama")),
        "llama.block_count": g_u32("llama.block_count", L),
        "llama.embedding_length": g_u32("llama.embedding_length", H),
        "llama.feed_forward_length": g_u32("llama.feed_forward_length", I),
        "llama.attention.head_count": g_u32("llama.attention.head_count", 4),
        "llama.attention.head_count_kv": g_u32("llama.attention.head_count_kv", 2),
        "llama.context_length": g_u32("llama.context_length", 512),
        "llama.vocab_size": g_u32("llama.vocab_size", V),
    }
    for key, value in replace.items():
        key = key.replace("__", ".")
        if value is None:
            kvs.pop(key, None)
        else:
            kvs[key] = value
    return kvs


def gguf_tensors() -> list[tuple[str, tuple[int, ...]]]:
    """The tiny Llama's tensors in ggml ne order (ne[0] = elements per row), all F32."""
    out = [("token_embd.weight", (H, V)), ("output.weight", (H, V)), ("output_norm.weight", (H,))]
    for i in range(L):
        out += [(f"blk.{i}.attn_q.weight", (H, H)), (f"blk.{i}.attn_k.weight", (H, 32)), (f"blk.{i}.attn_v.weight", (H, 32)),
                (f"blk.{i}.attn_output.weight", (H, H)), (f"blk.{i}.ffn_gate.weight", (H, I)),
                (f"blk.{i}.ffn_up.weight", (H, I)), (f"blk.{i}.ffn_down.weight", (I, H)),
                (f"blk.{i}.attn_norm.weight", (H,)), (f"blk.{i}.ffn_norm.weight", (H,))]
    return out


def gguf_bytes(kvs: Sequence[bytes] | None = None, *, n_kv: int | None = None, n_tensors: int | None = None,
               with_tensors: bool = True, version: int = 3) -> bytes:
    """A GGUF file (header, tensor infos and zeroed tensor data); the counts may lie."""
    kvs = list(gguf_metadata().values()) if kvs is None else list(kvs)
    infos, offset = [], 0
    if with_tensors:
        for name, shape in gguf_tensors():
            infos.append(g_info(name, shape, offset))
            offset += -(-math.prod(shape) * 4 // 32) * 32
    head = b"GGUF" + struct.pack("<IQQ", version, len(infos) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv)
    head += b"".join(kvs) + b"".join(infos)
    return head + b"\0" * (-len(head) % 32) + bytes(offset)


def gguf_case(id: str, content: bytes | Callable[[], bytes], *expect: str, heavy: bool = False, code: int = 2,
              name: str = "model.gguf") -> Case:
    """`plan memory --model <tmp>/model.gguf`; the message must also name the file."""

    def build(tmp: Path) -> list[str]:
        path = tmp / name
        path.write_bytes(content() if callable(content) else content)
        return ["memory", "--model", str(path)]

    return case(id, build, *((f"{{tmp}}/{name}",) if code == 2 else ()), *expect, heavy=heavy, code=code)


# ----------------------------------------------------------------------------- inventories

VALID_INVENTORY = "name: x\nnodes:\n  - name: a\n    devices:\n      - type: rtx-4090\n"


def custom_inventory(**fields: str) -> str:
    """One node with one custom device; `fields` replace or add the device's keys (raw YAML values)."""
    device = {"type": "custom", "name": "mygpu", "memory_gb": "24", "bandwidth_gb_s": "1000", "fp16_tflops": "100"}
    device.update(fields)
    lines = "".join(f"        {k}: {v}\n" for k, v in device.items())
    return "name: x\nnodes:\n  - name: a\n    devices:\n      - " + lines[8:]


def billion_laughs_yaml(levels: int = 9, fan: int = 10) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * fan) + "]")
    return "\n".join(lines) + f"\nname: x\nnodes: *a{levels - 1}\n"


def many_nodes_yaml(entries: int = 300, count: int = 4096) -> str:
    """A ~27 KB file claiming entries x count nodes."""
    body = "".join(f"  - name: n{i}\n    count: {count}\n    devices:\n      - type: rtx-4090\n" for i in range(entries))
    return "name: x\nnodes:\n" + body + "network: ethernet-10g\n"


def many_custom_types_yaml(n: int = 100) -> str:
    body = "".join(f"  - name: n{i}\n    devices:\n      - type: custom\n        name: gpu{i}\n        memory_gb: 24\n"
                   f"        bandwidth_gb_s: 1000\n        fp16_tflops: 100\n" for i in range(n))
    return "name: x\nnodes:\n" + body + "network: ethernet-10g\n"


def deep_yaml(depth: int) -> str:
    return "name: x\nnodes: " + "[" * depth + "]" * depth + "\n"


def two_nodes(links: str) -> str:
    return ("name: x\nnodes:\n  - name: x1\n    devices:\n      - type: rtx-4090\n"
            "  - name: x2\n    devices:\n      - type: rtx-4090\nnetwork:\n  default: ethernet-10g\n  links:\n" + links)


@dataclass(frozen=True)
class InventoryCase:
    """An inventory file, run through `inventory validate`, `inventory show` and `deploy`."""

    id: str
    content: str | bytes
    expect: tuple[str, ...]
    code: int = 2
    heavy: bool = False
    devices: int | None = None  # for a valid file: the devices it resolves to


def inventory_case(id: str, content: str | bytes, *expect: str, code: int = 2, heavy: bool = False,
                   devices: int | None = None) -> InventoryCase:
    return InventoryCase(id, content, tuple(expect), code, heavy, devices)


INVENTORY_CASES = [
    inventory_case("custom-memory_gb-1e300", custom_inventory(memory_gb="1e300"), "memory_gb"),
    inventory_case("custom-memory_gb-inf", custom_inventory(memory_gb=".inf"), "memory_gb"),
    inventory_case("custom-memory_gb-nan", custom_inventory(memory_gb=".nan"), "memory_gb", "NaN is not a number"),
    inventory_case("custom-memory_gb-1e-300", custom_inventory(memory_gb="1e-300"), "memory_gb"),
    inventory_case("custom-bandwidth-nan", custom_inventory(bandwidth_gb_s=".nan"), "bandwidth_gb_s", "NaN is not a number"),
    inventory_case("custom-fp16_tflops-string", custom_inventory(fp16_tflops="lots"), "fp16_tflops"),
    inventory_case("price_usd-inf", VALID_INVENTORY + "        price_usd: .inf\n", "price_usd"),
    inventory_case("price_usd-nan", VALID_INVENTORY + "        price_usd: .nan\n", "price_usd", "NaN is not a number"),
    inventory_case("nested-100000-deep", deep_yaml(100_000), "nested", heavy=True),
    inventory_case("alias-bomb", billion_laughs_yaml(), "aliases", heavy=True),
    inventory_case("recursive-alias", "name: x\nnodes: &n\n  - name: a\n    devices: *n\n", "alias", heavy=True),
    inventory_case("recursive-alias-in-mapping", "name: x\nnodes:\n  - &d\n    name: a\n    devices: [*d]\n", "alias",
                   heavy=True),
    inventory_case("1.2M-nodes-from-27KB", many_nodes_yaml(), "nodes", "4,096", heavy=True),
    inventory_case("100-custom-device-types", many_custom_types_yaml(), "nodes", "device types", heavy=True),
    inventory_case("count-010-is-ten", VALID_INVENTORY + "        count: 010\n", code=0, devices=10),
    inventory_case("count-0o12-is-ten", VALID_INVENTORY + "        count: 0o12\n", code=0, devices=10),
    inventory_case("count-1:30", VALID_INVENTORY + "        count: 1:30\n", "count", "integer"),
    inventory_case("count-yes", VALID_INVENTORY + "        count: yes\n", "count", "integer"),
    inventory_case("count-huge", VALID_INVENTORY + "        count: 99999999999999999999999\n", "count"),
    inventory_case("custom-named-like-catalog-id", custom_inventory(name="rtx-4090"), "name", "rtx-4090"),
    inventory_case("custom-named-like-catalog-id-upper", custom_inventory(name="RTX-4090"), "name", "RTX-4090"),
    inventory_case("link-between-unknown-nodes", two_nodes("    - between: [a, b]\n      type: ethernet-10g\n"),
                   "a <-> b"),
    inventory_case("link-unknown-type", two_nodes("    - between: [x1, x2]\n      type: carrier-pigeon\n"),
                   "x1 <-> x2", "carrier-pigeon"),
    inventory_case("network-unknown-type", VALID_INVENTORY + "network: carrier-pigeon\n", "network", "carrier-pigeon"),
    inventory_case("link-between-one-name", two_nodes("    - between: [x1]\n      type: ethernet-10g\n"), "between"),
    inventory_case("truncated-flow", "name: x\nnodes: [{name: a, devices: [{type: rtx-40", "not valid YAML"),
    inventory_case("truncated-mid-key", VALID_INVENTORY[:-12], "nodes.0.devices.0"),
    inventory_case("nul-byte", VALID_INVENTORY.replace("rtx-4090", "rtx\x00-4090"), "not valid YAML"),
    inventory_case("escape-sequence", VALID_INVENTORY.replace("rtx-4090", "rtx\x1b[2J-4090"), "not valid YAML"),
    inventory_case("count-5000-digits", VALID_INVENTORY + "        count: " + "9" * 5000 + "\n", "count"),
    inventory_case("tabs", "name: x\nnodes:\n\t- name: a\n\t  devices:\n\t\t- type: rtx-4090\n", "not valid YAML", ":3"),
    inventory_case("binary", bytes(range(256)) * 4, "UTF-8"),
    inventory_case("empty", "", "empty"),
    inventory_case("a-list", "- 1\n- 2\n", "mapping"),
    inventory_case("unknown-device-type", VALID_INVENTORY.replace("rtx-4090", "rtx-9999"), "type", "rtx-9999"),
    inventory_case("unknown-key", VALID_INVENTORY + "        colour: red\n", "colour"),
    inventory_case("duplicate-key", VALID_INVENTORY + "        type: rtx-3090\n", "duplicate", "type"),
    inventory_case("node-name-with-newline", 'name: x\nnodes:\n  - name: "a\\nb"\n    devices:\n      - type: rtx-4090\n',
                   "name"),
    inventory_case("reserved-exceeds-memory", VALID_INVENTORY + "        reserved_gb: 1000\n", "reserved"),
    inventory_case("usable_memory_fraction-nan", VALID_INVENTORY + "        usable_memory_fraction: .nan\n",
                   "usable_memory_fraction", "NaN is not a number"),
    inventory_case("yaml-python-tag", "name: !!python/object/apply:os.system [echo hi]\nnodes: []\n", "name"),
]


# ----------------------------------------------------------------------------- saved detector output

def system_profiler(hardware: Any = None, displays: Any = None, **fields: Any) -> str:
    data = json.loads((DETECT_DATA / "system-profiler-m2-ultra.json").read_text())
    if hardware is not None:
        data["SPHardwareDataType"] = hardware
    if displays is not None:
        data["SPDisplaysDataType"] = displays
    for key, value in fields.items():
        target = data["SPDisplaysDataType"][0] if key.startswith("sppci") else data["SPHardwareDataType"][0]
        target[key] = value
    return json.dumps(data, indent=2)


XML_BOMB = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
            + "".join(f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n'
                      for i in range(1, 10))
            + ']>\n<nvidia_smi_log><gpu><product_name>&lol9;</product_name></gpu></nvidia_smi_log>\n')


def detect_case(id: str, content: str | bytes, *expect: str, name: str = "saved.txt", heavy: bool = False,
                extra: Sequence[str] = ()) -> Case:
    """`plan inventory detect --from-file <tmp>/<name>`; the message must also name the file."""

    def build(tmp: Path) -> list[str]:
        path = tmp / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return ["inventory", "detect", "--from-file", str(path), "--node-name", "here", *extra]

    return case(id, build, f"{{tmp}}/{name}", *expect, heavy=heavy)


# ----------------------------------------------------------------------------- plans

PLAN_ARGS = ("deploy", "--inventory", HOMELAB, "--model", "llama-3.1-8b")


@functools.cache
def saved_plan() -> tuple[str, str]:
    """(YAML written by `plan deploy ... -o plan.yaml`, the same run's --format json output)."""
    import tempfile

    from click.testing import CliRunner

    from planner.cli import main

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "plan.yaml"
        result = CliRunner().invoke(main, [*PLAN_ARGS, "--format", "json", "-o", str(out)])
        assert result.exit_code == 0, result.output
        return out.read_text(), result.stdout


def plan_case(id: str, edit: Callable[[dict[str, Any]], Any] | None, *expect: str, name: str = "plan.yaml",
              code: int = 2, text: str | None = None, heavy: bool = False) -> Case:
    """`plan show <tmp>/<name>` of the saved plan changed by `edit` (or of `text`)."""

    def build(tmp: Path) -> list[str]:
        import yaml

        path = tmp / name
        if text is not None:
            path.write_text(text)
        else:
            data = yaml.safe_load(saved_plan()[0])
            if edit is not None:
                edit(data)
            path.write_text(json.dumps(data, indent=2) if name.endswith(".json") else yaml.safe_dump(data, sort_keys=False))
        return ["show", str(path)]

    return case(id, build, *((f"{{tmp}}/{name}",) if code == 2 else ()), *expect, code=code, heavy=heavy)


def set_key(*path: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        node: Any = data
        for part in path[:-1]:
            node = node[part]
        if value is DROP:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return edit
