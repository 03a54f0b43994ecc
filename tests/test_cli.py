"""The `plan` command line through click's CliRunner: outputs, exit codes and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from planner.cli import main
from tests.conftest import ROOT, tiny_config, write_config


def run(runner, *args: str):
    return runner.invoke(main, list(args), catch_exceptions=False)


def test_memory_json_has_the_documented_keys(runner) -> None:
    result = run(runner, "memory", "--model", "llama-3.1-8b", "--format", "json", "--users", "2", "--context", "1000")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["model"]["parameters"]["total"] == 8_030_261_248
    assert data["model"]["parameters"]["active"] == 8_030_261_248
    assert data["kv_cache"]["bytes_per_token"] == 131_072
    memory = data["memory"]
    for key in ("weights_bytes", "kv_cache_bytes", "activations_bytes", "gradients_bytes", "optimizer_bytes", "overhead_bytes", "total_bytes"):
        assert isinstance(memory[key], int)
    assert memory["kv_cache_bytes"] == 2 * 1000 * 131_072
    assert memory["total_bytes"] == sum(memory[k] for k in memory if k.endswith("_bytes") and k != "total_bytes")


def test_memory_table_states_units(runner) -> None:
    result = run(runner, "memory", "--model", "qwen3-30b-a3b", "--weights", "q4_k_m")
    assert result.exit_code == 0
    assert "GB" in result.output and "GiB" in result.output
    for component in ("embedding", "attention", "router", "experts", "norms", "lm_head"):
        assert component in result.output
    assert "active per token 3,353,032,704" in result.output


def test_output_is_byte_for_byte_deterministic(runner) -> None:
    args = ("memory", "--model", "deepseek-v3", "--weights", "fp8_block128", "-tp", "8", "--format", "yaml")
    assert run(runner, *args).output == run(runner, *args).output
    yaml.safe_load(run(runner, *args).output)


def test_quick_mode_reproduces_the_seed_table(runner) -> None:
    result = run(runner, "memory", "--params", "10B", "--weights", "fp16", "--overhead", "0", "--runtime-reserve-gib", "0", "--format", "json")
    data = json.loads(result.output)
    assert data["memory"]["total_bytes"] == 20 * 10**9
    assert data["seed_table_gb"] == {"FP32": 40.0, "FP16/BF16": 20.0, "INT8": 10.0, "INT4": 5.0}


def test_quick_training_reproduces_zero_example(runner) -> None:
    expected = {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.9}
    for stage, gb in expected.items():
        result = run(runner, "memory", "--params", "7.5B", "--mode", "train", "--zero-stage", str(stage), "-dp", "64",
                     "--overhead", "0", "--runtime-reserve-gib", "0", "--format", "json")
        assert round(json.loads(result.output)["memory"]["total_bytes"] / 1e9, 1) == gb


def test_deepspeed_estimator_through_the_cli(runner) -> None:
    result = run(runner, "memory", "--params", "2851M", "--mode", "train", "--zero-stage", "3", "-dp", "8",
                 "--estimator", "deepspeed", "--largest-layer-params", "32899072", "--format", "json")
    assert round(json.loads(result.output)["deepspeed"]["gpu_bytes_per_device"] / 2**30, 2) == 6.10


def test_training_with_parallelism(runner) -> None:
    result = run(runner, "memory", "--model", "llama-3.1-70b", "--mode", "train", "--zero-stage", "1", "-tp", "8",
                 "-pp", "4", "-dp", "4", "--recompute", "selective", "--sequence-parallel", "--format", "json")
    data = json.loads(result.output)
    assert len(data["devices"]) == 4 and data["cluster"]["devices"] == 128
    assert data["memory"]["optimizer_bytes"] > 0 and data["memory"]["gradients_bytes"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("memory", "--model", "lama-3.1-8b"), "did you mean 'llama-3.1-8b'"),
        (("memory", "--model", "llama-3.1-8b", "--weights", "q4km"), "did you mean 'q4_k_m'"),
        (("memory", "--model", "llama-3.1-8b", "--kv-cache", "fp9"), "--kv-cache"),
        (("memory", "--model", "llama-3.1-8b", "--context", "999999"), "maximum context of 131,072"),
        (("memory", "--model", "llama-3.1-8b", "-tp", "3"), "--tensor-parallel-size"),
        (("memory", "--params", "lots"), "--params"),
        (("memory",), "exactly one of --model"),
        (("memory", "--model", "llama-3.1-8b", "--mode", "train", "--offload", "optimizer+params", "--zero-stage", "2"), "ZeRO stage 3"),
        (("memory", "--model", "llama-3.1-8b", "--lora-rank", "8"), "--mode train"),
        (("memory", "--params", "7B", "--weights", "q4_k_m"), "mixes formats per tensor"),
        (("memory", "--params", "70B", "-pp", "2"), "--pipeline-parallel-size"),
        (("models", "show", "qwen-3-8b"), "did you mean"),
    ],
)
def test_bad_input_exits_2_with_one_line(runner, args, message) -> None:
    result = runner.invoke(main, list(args))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_config_json_names_file_line_and_field(runner, tmp_path: Path) -> None:
    path = write_config(tmp_path, tiny_config(hidden_size=-3))
    result = runner.invoke(main, ["memory", "--model", str(path)])
    assert result.exit_code == 2
    assert f"{path}:3:" in result.output and "hidden_size" in result.output
    truncated = tmp_path / "truncated.json"
    truncated.write_text('{\n  "model_type": "llama",\n  "hidden_size": 64,\n')
    result = runner.invoke(main, ["memory", "--model", str(truncated)])
    assert result.exit_code == 2 and f"{truncated}:4" in result.output and "not valid JSON" in result.output
    missing = write_config(tmp_path, {"model_type": "llama", "hidden_size": 64}, "missing.json")
    result = runner.invoke(main, ["memory", "--model", str(missing)])
    assert result.exit_code == 2 and "num_hidden_layers" in result.output


def test_config_folder_and_file_give_the_same_answer(runner) -> None:
    folder = ROOT / "examples" / "mistral-7b-v0.1"
    a = run(runner, "memory", "--model", str(folder), "--format", "json")
    b = run(runner, "memory", "--model", str(folder / "config.json"), "--format", "json")
    assert json.loads(a.output)["memory"] == json.loads(b.output)["memory"]
    assert json.loads(a.output)["model"]["parameters"]["total"] == 7_241_732_096


def test_models_list_and_show(runner) -> None:
    result = run(runner, "models", "list", "--format", "json")
    rows = json.loads(result.output)
    assert len(rows) >= 25
    by_id = {r["id"]: r for r in rows}
    assert by_id["mixtral-8x7b"]["parameters_active"] == 12_879_925_248
    text = run(runner, "models", "list")
    assert "deepseek-v3" in text.output
    show = run(runner, "models", "show", "deepseek-ai/DeepSeek-V3")
    assert "kv_lora_rank=512" in show.output and "671,026,419,200" in show.output
    assert json.loads(run(runner, "models", "show", "gemma-2-9b", "--format", "json").output)["spec"]["tie_word_embeddings"]
    assert runner.invoke(main, ["models", "list", "--family", "nope"]).exit_code == 2


def test_formats_lists_bits(runner) -> None:
    data = json.loads(run(runner, "formats", "--format", "json").output)
    bits = {f["id"]: f["bits_per_weight"] for f in data["weights"]}
    assert bits["int4"] == 4.125 and bits["q4_k_m"] is None
    assert "fp8" in run(runner, "formats").output


EXAMPLE_COMMANDS = [
    line.strip()[len("plan "):]
    for line in (ROOT / "examples" / "README.md").read_text().splitlines()
    if line.strip().startswith("plan ")
]


@pytest.mark.parametrize("command", EXAMPLE_COMMANDS)
def test_every_example_command_runs(runner, command: str, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(ROOT)
    args = command.split()
    if "-o" in args:  # write the example's output file outside the checkout
        at = args.index("-o") + 1
        args[at] = str(tmp_path / args[at])
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    if "-o" in args:
        assert Path(args[args.index("-o") + 1]).exists()
