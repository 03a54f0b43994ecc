"""Models read from checkpoints: synthetic safetensors and GGUF files with the real tensor names of
Llama, Qwen3-MoE, DeepSeek-V3 and gpt-oss layouts, checked against the config-based accounting."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from planner.cli import main
from planner.errors import InputError
from planner.estimate.parameters import estimate_parameters
from planner.estimate.weights import estimate_weight_bytes
from planner.loaders.catalog import load_model
from planner.loaders.formats import build_precision_mix


def write_model(folder: Path, config: dict, tensors: dict[str, tuple[tuple[int, ...], str]], *, shards: int = 1) -> Path:
    """config.json plus safetensors shards holding zero tensors of the given shapes and dtypes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    names = list(tensors)
    weight_map = {}
    for s in range(shards):
        part = names[s::shards]
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors" if shards > 1 else "model.safetensors"
        arrays = {n: np.zeros(tensors[n][0], dtype=tensors[n][1]) for n in part if tensors[n][1] != "F8_E4M3"}
        fp8 = {n: tensors[n][0] for n in part if tensors[n][1] == "F8_E4M3"}
        if fp8:
            _write_raw(folder / file, arrays, fp8)
        else:
            save_file(arrays, str(folder / file))
        weight_map.update({n: file for n in part})
    if shards > 1:
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def _write_raw(path: Path, arrays: dict[str, np.ndarray], fp8: dict[str, tuple[int, ...]]) -> None:
    """A safetensors file with F8_E4M3 tensors, which numpy cannot express (same layout as the library writes)."""
    codes = {np.dtype("float16"): "F16", np.dtype("float32"): "F32", np.dtype("uint8"): "U8", np.dtype("int32"): "I32"}
    header, blobs, offset = {}, [], 0
    for name, array in arrays.items():
        blob = array.tobytes()
        header[name] = {"dtype": codes[array.dtype], "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    for name, shape in fp8.items():
        size = int(np.prod(shape))
        header[name] = {"dtype": "F8_E4M3", "shape": list(shape), "data_offsets": [offset, offset + size]}
        blobs.append(bytes(size))
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


H, I, V, L = 64, 128, 100, 2


def llama_config(**extra) -> dict:
    return {"model_type": "llama", "hidden_size": H, "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": 4,
            "num_key_value_heads": 2, "vocab_size": V, "max_position_embeddings": 512, "tie_word_embeddings": False,
            "torch_dtype": "float16", **extra}


def llama_tensors(dtype: str = "float16") -> dict:
    t = {"model.embed_tokens.weight": ((V, H), dtype), "lm_head.weight": ((V, H), dtype), "model.norm.weight": ((H,), dtype)}
    for i in range(L):
        p = f"model.layers.{i}."
        t.update({p + "self_attn.q_proj.weight": ((H, H), dtype), p + "self_attn.k_proj.weight": ((32, H), dtype),
                  p + "self_attn.v_proj.weight": ((32, H), dtype), p + "self_attn.o_proj.weight": ((H, H), dtype),
                  p + "mlp.gate_proj.weight": ((I, H), dtype), p + "mlp.up_proj.weight": ((I, H), dtype),
                  p + "mlp.down_proj.weight": ((H, I), dtype), p + "input_layernorm.weight": ((H,), dtype),
                  p + "post_attention_layernorm.weight": ((H,), dtype)})
    return t


def test_llama_folder_counts_equal_config_accounting(tmp_path: Path) -> None:
    model = load_model(str(write_model(tmp_path / "llama", llama_config(), llama_tensors(), shards=2)))
    expected = estimate_parameters(model).total_parameters
    assert model.checkpoint is not None and model.checkpoint.format == "safetensors"
    assert sum(t.params for t in model.checkpoint.tensors) == expected
    weights = estimate_weight_bytes(model, build_precision_mix("checkpoint"))
    assert weights.total_bytes == 2 * expected
    assert model.checkpoint.notes == ()


def test_single_safetensors_file_needs_its_config(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "one", llama_config(), llama_tensors())
    assert load_model(str(folder / "model.safetensors")).checkpoint is not None
    (folder / "config.json").unlink()
    with pytest.raises(InputError, match="needs its config.json"):
        load_model(str(folder / "model.safetensors"))


def test_qwen3_moe_layout(tmp_path: Path) -> None:
    config = {"model_type": "qwen3_moe", "hidden_size": H, "intermediate_size": I, "num_hidden_layers": L,
              "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "vocab_size": V, "num_experts": 4,
              "num_experts_per_tok": 2, "moe_intermediate_size": 16, "decoder_sparse_step": 1, "mlp_only_layers": [],
              "max_position_embeddings": 512, "tie_word_embeddings": False}
    t = {"model.embed_tokens.weight": ((V, H), "float16"), "lm_head.weight": ((V, H), "float16"), "model.norm.weight": ((H,), "float16")}
    for i in range(L):
        p = f"model.layers.{i}."
        t.update({p + "self_attn.q_proj.weight": ((128, H), "float16"), p + "self_attn.k_proj.weight": ((64, H), "float16"),
                  p + "self_attn.v_proj.weight": ((64, H), "float16"), p + "self_attn.o_proj.weight": ((H, 128), "float16"),
                  p + "self_attn.q_norm.weight": ((32,), "float16"), p + "self_attn.k_norm.weight": ((32,), "float16"),
                  p + "mlp.gate.weight": ((4, H), "float16"), p + "input_layernorm.weight": ((H,), "float16"),
                  p + "post_attention_layernorm.weight": ((H,), "float16")})
        for e in range(4):
            t.update({p + f"mlp.experts.{e}.gate_proj.weight": ((16, H), "float16"),
                      p + f"mlp.experts.{e}.up_proj.weight": ((16, H), "float16"),
                      p + f"mlp.experts.{e}.down_proj.weight": ((H, 16), "float16")})
    model = load_model(str(write_model(tmp_path / "moe", config, t)))
    counts = estimate_parameters(model)
    on_disk: dict[str, int] = {}
    for tensor in model.checkpoint.tensors:
        on_disk[tensor.component] = on_disk.get(tensor.component, 0) + tensor.params
    assert sum(on_disk.values()) == counts.total_parameters
    assert on_disk["experts"] == counts.total["experts"] and on_disk["router"] == counts.total["router"]


def test_deepseek_v3_layout_fp8_with_mtp_block(tmp_path: Path) -> None:
    heads, q_rank, kv_rank, rope, nope, v = 4, 24, 16, 8, 16, 16
    config = {"model_type": "deepseek_v3", "hidden_size": H, "intermediate_size": I, "num_hidden_layers": L,
              "num_attention_heads": heads, "num_key_value_heads": heads, "vocab_size": V, "q_lora_rank": q_rank,
              "kv_lora_rank": kv_rank, "qk_rope_head_dim": rope, "qk_nope_head_dim": nope, "v_head_dim": v,
              "n_routed_experts": 4, "num_experts_per_tok": 2, "n_shared_experts": 1, "moe_intermediate_size": 16,
              "first_k_dense_replace": 1, "moe_layer_freq": 1, "topk_method": "noaux_tc", "num_nextn_predict_layers": 1,
              "max_position_embeddings": 4096, "tie_word_embeddings": False,
              "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}}
    t = {"model.embed_tokens.weight": ((V, H), "float16"), "lm_head.weight": ((V, H), "float16"), "model.norm.weight": ((H,), "float16")}

    def fp8(name: str, shape: tuple[int, int]) -> None:
        t[name] = (shape, "F8_E4M3")
        t[name + "_scale_inv"] = ((1, 1), "float32")

    for i in range(L + 1):  # block L is the multi-token-prediction module
        p = f"model.layers.{i}."
        fp8(p + "self_attn.q_a_proj.weight", (q_rank, H))
        fp8(p + "self_attn.q_b_proj.weight", (heads * (nope + rope), q_rank))
        fp8(p + "self_attn.kv_a_proj_with_mqa.weight", (kv_rank + rope, H))
        fp8(p + "self_attn.kv_b_proj.weight", (heads * (nope + v), kv_rank))
        fp8(p + "self_attn.o_proj.weight", (H, heads * v))
        t[p + "self_attn.q_a_layernorm.weight"] = ((q_rank,), "float16")
        t[p + "self_attn.kv_a_layernorm.weight"] = ((kv_rank,), "float16")
        t[p + "input_layernorm.weight"] = ((H,), "float16")
        t[p + "post_attention_layernorm.weight"] = ((H,), "float16")
        if i == 0:
            for name, shape in (("gate_proj", (I, H)), ("up_proj", (I, H)), ("down_proj", (H, I))):
                fp8(p + f"mlp.{name}.weight", shape)
        else:
            t[p + "mlp.gate.weight"] = ((4, H), "float32")
            t[p + "mlp.gate.e_score_correction_bias"] = ((4,), "float32")
            for e in range(4):
                for name, shape in (("gate_proj", (16, H)), ("up_proj", (16, H)), ("down_proj", (H, 16))):
                    fp8(p + f"mlp.experts.{e}.{name}.weight", shape)
            for name, shape in (("gate_proj", (16, H)), ("up_proj", (16, H)), ("down_proj", (H, 16))):
                fp8(p + f"mlp.shared_experts.{name}.weight", shape)
    p = f"model.layers.{L}."
    t.update({p + "enorm.weight": ((H,), "float16"), p + "hnorm.weight": ((H,), "float16"),
              p + "eh_proj.weight": ((H, 2 * H), "float16"), p + "embed_tokens.weight": ((V, H), "float16"),
              p + "shared_head.head.weight": ((V, H), "float16"), p + "shared_head.norm.weight": ((H,), "float16")})
    model = load_model(str(write_model(tmp_path / "dsv3", config, t)))
    served = [x for x in model.checkpoint.tensors if x.layer is None or x.layer < L]
    assert sum(x.params for x in served) == estimate_parameters(model).total_parameters
    assert model.checkpoint.quant_method == "fp8"
    assert any("beyond num_hidden_layers=2" in n for n in model.checkpoint.notes)
    q_a = next(x for x in served if x.name.endswith("layers.0.self_attn.q_a_proj.weight"))
    assert q_a.bytes == q_rank * H + 4 and q_a.dtype == "F8_E4M3"  # fp8 data plus its fp32 block scale


def test_gpt_oss_layout_mxfp4(tmp_path: Path) -> None:
    experts, width, heads, kv, hd = 4, 64, 4, 2, 16
    config = {"model_type": "gpt_oss", "hidden_size": H, "intermediate_size": width, "num_hidden_layers": L,
              "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": hd, "vocab_size": V,
              "num_local_experts": experts, "num_experts_per_tok": 2, "experts_per_token": 2, "attention_bias": True,
              "sliding_window": 8, "layer_types": ["sliding_attention", "full_attention"], "max_position_embeddings": 512,
              "tie_word_embeddings": False, "quantization_config": {"quant_method": "mxfp4"}}
    t = {"model.embed_tokens.weight": ((V, H), "float16"), "lm_head.weight": ((V, H), "float16"), "model.norm.weight": ((H,), "float16")}
    for i in range(L):
        p = f"model.layers.{i}."
        for name, out, inp in (("q_proj", heads * hd, H), ("k_proj", kv * hd, H), ("v_proj", kv * hd, H), ("o_proj", H, heads * hd)):
            t[p + f"self_attn.{name}.weight"] = ((out, inp), "float16")
            t[p + f"self_attn.{name}.bias"] = ((out,), "float16")
        t[p + "self_attn.sinks"] = ((heads,), "float32")
        t[p + "mlp.router.weight"] = ((experts, H), "float16")
        t[p + "mlp.router.bias"] = ((experts,), "float16")
        t[p + "mlp.experts.gate_up_proj_blocks"] = ((experts, 2 * width, H // 32, 16), "uint8")
        t[p + "mlp.experts.gate_up_proj_scales"] = ((experts, 2 * width, H // 32), "uint8")
        t[p + "mlp.experts.gate_up_proj_bias"] = ((experts, 2 * width), "float16")
        t[p + "mlp.experts.down_proj_blocks"] = ((experts, H, width // 32, 16), "uint8")
        t[p + "mlp.experts.down_proj_scales"] = ((experts, H, width // 32), "uint8")
        t[p + "mlp.experts.down_proj_bias"] = ((experts, H), "float16")
        t[p + "input_layernorm.weight"] = ((H,), "float16")
        t[p + "post_attention_layernorm.weight"] = ((H,), "float16")
    model = load_model(str(write_model(tmp_path / "oss", config, t)))
    assert sum(x.params for x in model.checkpoint.tensors) == estimate_parameters(model).total_parameters
    blocks = [x for x in model.checkpoint.tensors if x.dtype == "mxfp4"]
    assert blocks and all(x.bytes * 8 / x.params == pytest.approx(4.25) for x in blocks)  # OCP MX: 4 + 8/32


def test_gptq_checkpoint_bits(tmp_path: Path) -> None:
    t = llama_tensors()
    for i in range(L):
        for name, out, inp in (("q_proj", H, H), ("k_proj", 32, H), ("v_proj", 32, H), ("o_proj", H, H),
                               ("gate_proj", I, H), ("up_proj", I, H)):
            group = "self_attn" if name.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
            base = f"model.layers.{i}.{group}.{name}"
            del t[base + ".weight"]
            t[base + ".qweight"] = ((inp // 8, out), "int32")
            t[base + ".qzeros"] = ((inp // 32, out // 8), "int32")
            t[base + ".scales"] = ((inp // 32, out), "float16")
            t[base + ".g_idx"] = ((inp,), "int32")
    config = llama_config(quantization_config={"quant_method": "gptq", "bits": 4, "group_size": 32})
    model = load_model(str(write_model(tmp_path / "gptq", config, t)))
    assert sum(x.params for x in model.checkpoint.tensors) == estimate_parameters(model).total_parameters
    q = next(x for x in model.checkpoint.tensors if x.name == "model.layers.0.self_attn.q_proj.weight")
    assert q.dtype == "gptq-int4" and q.params == H * H
    assert q.bytes * 8 / q.params == pytest.approx(4 + (16 + 4) / 32 + 32 / H)  # scales, zeros, g_idx


def test_tied_embeddings_stored_twice_are_reported(tmp_path: Path) -> None:
    model = load_model(str(write_model(tmp_path / "tied", llama_config(tie_word_embeddings=True), llama_tensors())))
    assert any("stores lm_head.weight too" in n for n in model.checkpoint.notes)
    weights = estimate_weight_bytes(model, build_precision_mix("checkpoint"))
    assert weights.by_component["lm_head"] == V * H * 2  # what is on disk


def test_gguf_file(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(L)
    writer.add_embedding_length(H)
    writer.add_feed_forward_length(I)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_context_length(512)
    writer.add_vocab_size(V)
    writer.add_file_type(7)
    names = {"token_embd.weight": (V, H), "output.weight": (V, H), "output_norm.weight": (H,)}
    for i in range(L):
        names.update({f"blk.{i}.attn_q.weight": (H, H), f"blk.{i}.attn_k.weight": (32, H), f"blk.{i}.attn_v.weight": (32, H),
                      f"blk.{i}.attn_output.weight": (H, H), f"blk.{i}.ffn_gate.weight": (I, H), f"blk.{i}.ffn_up.weight": (I, H),
                      f"blk.{i}.ffn_down.weight": (H, I), f"blk.{i}.attn_norm.weight": (H,), f"blk.{i}.ffn_norm.weight": (H,)})
    for name, shape in names.items():
        if len(shape) == 1:
            writer.add_tensor(name, np.zeros(shape, dtype=np.float32))
        else:  # Q8_0: 34 bytes per 32 weights along each row
            rows, cols = shape
            writer.add_tensor(name, np.zeros((rows, cols // 32 * 34), dtype=np.uint8),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    model = load_model(str(path))
    assert model.checkpoint.format == "gguf" and model.num_layers == L and model.num_key_value_heads == 2
    assert sum(x.params for x in model.checkpoint.tensors) == estimate_parameters(model).total_parameters
    matrices = [x for x in model.checkpoint.tensors if x.kind]
    assert all(x.dtype == "Q8_0" and x.bytes * 8 / x.params == 8.5 for x in matrices)


def test_cli_memory_and_deploy_on_a_checkpoint(runner, tmp_path: Path) -> None:
    folder = write_model(tmp_path / "llama", llama_config(), llama_tensors())
    result = runner.invoke(main, ["memory", "--model", str(folder), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["precision"]["weights"] == "checkpoint"
    assert data["weights"]["total_bytes"] == data["model"]["checkpoint"]["bytes_served"]
    text = runner.invoke(main, ["memory", "--model", str(folder)]).output
    assert "Checkpoint (safetensors" in text
    override = json.loads(runner.invoke(main, ["memory", "--model", str(folder), "--weights", "int4", "--format", "json"]).output)
    assert override["weights"]["total_bytes"] < data["weights"]["total_bytes"]
    from tests.conftest import ROOT

    plan = runner.invoke(main, ["deploy", "--inventory", str(ROOT / "inventories" / "homelab.yaml"), "--model", str(folder),
                                "--users", "2", "--context", "256", "--format", "json"])
    assert plan.exit_code == 0, plan.output
    assert json.loads(plan.output)["request"]["precision"]["weights"] == "checkpoint" and json.loads(plan.output)["verification"] == []
    bad = runner.invoke(main, ["memory", "--model", "llama-3.1-8b", "--weights", "checkpoint"])
    assert bad.exit_code == 2 and "checkpoint" in bad.output


def _file(header: dict, data: int) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(data)


@pytest.mark.parametrize(("content", "message"), [
    (b"\x01", "shorter than"),
    (struct.pack("<Q", 10**12) + b"{}", "header length"),
    (struct.pack("<Q", 4) + b"nope", "not JSON"),
    (_file({"w": {"dtype": "F16", "shape": [4], "data_offsets": [0, 4]}}, 8), "8 expected"),
    (_file({"w": {"dtype": "Q9", "shape": [4], "data_offsets": [0, 4]}}, 4), "unknown dtype"),
    (_file({"w": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}}, 4), "outside the file"),
    (_file({"w": {"shape": [4]}}, 4), "needs dtype"),
])
def test_malformed_safetensors_is_a_clear_error(runner, tmp_path: Path, content: bytes, message: str) -> None:
    folder = write_model(tmp_path / "bad", llama_config(), {})
    (folder / "model.safetensors").write_bytes(content)
    result = runner.invoke(main, ["memory", "--model", str(folder / "model.safetensors")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "model.safetensors" in result.output


def _quantised(layout: str) -> dict:
    t = llama_tensors()
    for i in range(L):
        for name, out, inp in (("self_attn.q_proj", H, H), ("mlp.gate_proj", I, H)):
            base = f"model.layers.{i}.{name}"
            del t[base + ".weight"]
            if layout == "awq":
                t[base + ".qweight"] = ((inp, out // 8), "int32")
                t[base + ".qzeros"] = ((inp // 32, out // 8), "int32")
                t[base + ".scales"] = ((inp // 32, out), "float16")
            elif layout == "compressed-tensors":
                t[base + ".weight_packed"] = ((out, inp // 8), "int32")
                t[base + ".weight_scale"] = ((out, inp // 32), "float16")
                t[base + ".weight_shape"] = ((2,), "int32")
            else:  # bitsandbytes nf4: two 4-bit values per byte, absmax per 64, quant map and state
                t[base + ".weight"] = ((out * inp // 2, 1), "uint8")
                t[base + ".weight.absmax"] = ((out * inp // 64,), "float32")
                t[base + ".weight.quant_map"] = ((16,), "float32")
                t[base + ".weight.quant_state.bitsandbytes__nf4"] = ((48,), "uint8")
    return t


@pytest.mark.parametrize(("method", "label"), [("awq", "awq-int4"), ("compressed-tensors", "int4"), ("bitsandbytes", "nf4")])
def test_other_quantised_layouts(tmp_path: Path, method: str, label: str) -> None:
    quant = {"quant_method": method, "bits": 4}
    if method == "compressed-tensors":
        quant = {"quant_method": method, "config_groups": {"group_0": {"weights": {"num_bits": 4}}}}
    model = load_model(str(write_model(tmp_path / method, llama_config(quantization_config=quant), _quantised(method))))
    assert model.checkpoint.quant_method == method
    assert sum(x.params for x in model.checkpoint.tensors) == estimate_parameters(model).total_parameters
    q = next(x for x in model.checkpoint.tensors if x.name == "model.layers.0.self_attn.q_proj.weight")
    assert q.dtype == label and q.params == H * H and 4 < q.bytes * 8 / q.params < 6


@pytest.mark.parametrize("content", [b"", b"GGUF\x03\x00\x00\x00garbage", b"not a gguf file at all"])
def test_malformed_gguf_is_a_clear_error(runner, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(content)
    result = runner.invoke(main, ["memory", "--model", str(path)])
    assert result.exit_code == 2, result.output
    assert "broken.gguf" in result.output and "Traceback" not in result.output
