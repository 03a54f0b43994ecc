"""Bad input never produces a traceback, a hang, unbounded memory or a lost file.

Every command and every file kind is fed hand-made hostile inputs (each a case with an id) and
random ones (hypothesis). For each case the contract of planner/cli/main.py is checked: the exit
code, no traceback, an error as ONE line on stderr starting "error:" that names the field, option
or file at fault, and a bound on time; the resource-heavy cases run in a subprocess capped at
3 GiB of address space and 60 s, so a bomb or a hang fails the case instead of the suite.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import re
import shlex
import signal
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cli import main
from planner.schemas.plan import SCHEMA_VERSION
from tests.fuzz_cases import (
    DETECT_DATA,
    DROP,
    G_ARRAY,
    G_FLOAT32,
    G_STRING,
    G_UINT32,
    G_UINT64,
    HOMELAB,
    INVENTORIES,
    INVENTORY_CASES,
    PLAN_ARGS,
    ROOT,
    VALID_INVENTORY,
    XML_BOMB,
    Case,
    Outcome,
    Raw,
    billion_laughs_yaml,
    case,
    checkpoint_case,
    checkpoint_config,
    config_case,
    config_text,
    deep_json,
    detect_case,
    fixed,
    g_kv,
    g_text,
    g_u32,
    gguf_bytes,
    gguf_case,
    gguf_metadata,
    index_of,
    plan_case,
    saved_plan,
    set_key,
    system_profiler,
    tensor_entries,
    tiny_config,
)

IN_PROCESS_SECONDS = 20.0  # wall clock, per in-process case
ISOLATED_SECONDS = 30.0  # wall clock, per subprocess case (which is killed at 60 s)
SPECIAL_FILE_CPU_SECONDS = 5.0  # CPU of the whole process, start-up included
MEMORY_CAP = 3 * 2**30
# The child caps its own address space before it imports the planner (no preexec_fn: the heavy
# cases run from worker threads, where forking with one is unsafe), and reports the CPU time it
# used on the descriptor named by FUZZ_CPU_FD: a refusal that is quick in CPU is quick on an idle
# machine, however loaded this one is, while a blocked read burns none and runs into the timeout.
CHILD = f"""
import atexit, os, resource, time
resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_CAP}, {MEMORY_CAP}))
fd = int(os.environ.pop("FUZZ_CPU_FD", "-1"))
if fd >= 0:
    atexit.register(lambda: os.write(fd, b"%.3f" % time.process_time()))
from planner.cli import main
main()
"""
CLI = [sys.executable, "-c", CHILD]
M8B = ("--model", "llama-3.1-8b")


# ----------------------------------------------------------------------------- running the CLI

def run_in_process(args: Sequence[str]) -> Outcome:
    start = time.perf_counter()
    result = CliRunner().invoke(main, list(args))
    elapsed = time.perf_counter() - start
    exception = result.exception if not isinstance(result.exception, SystemExit) else None
    if exception is not None:  # show where it came from in the failure report
        import traceback

        stderr = result.stderr + "".join(traceback.format_exception(exception))
        return Outcome(result.exit_code, result.stdout, stderr, elapsed, exception)
    return Outcome(result.exit_code, result.stdout, result.stderr, elapsed)


def run_isolated(args: Sequence[str], *, timeout: float = 60.0, stdout: Any = subprocess.PIPE) -> Outcome:
    """The CLI in its own process, capped at MEMORY_CAP bytes of address space and `timeout` seconds."""
    cpu_read, cpu_write = os.pipe()
    env = {**os.environ, "FUZZ_CPU_FD": str(cpu_write)}
    start = time.perf_counter()
    try:
        proc = subprocess.run([*CLI, *args], check=False, stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              timeout=timeout, cwd=ROOT, env=env, pass_fds=(cpu_write,))
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"hung: no exit after {timeout:.0f} s: plan {' '.join(map(str, args))[:300]}\n"
                    f"stderr: {(exc.stderr or b'').decode(errors='replace')[:500]}")
    finally:
        os.close(cpu_write)
        with os.fdopen(cpu_read, "rb") as handle:
            reported = handle.read()
    elapsed = time.perf_counter() - start
    out = proc.stdout.decode("utf-8", "replace") if isinstance(proc.stdout, bytes) else ""
    return Outcome(proc.returncode, out, proc.stderr.decode("utf-8", "replace"), elapsed,
                   cpu=float(reported) if reported else None)


def describe(outcome: Outcome) -> str:
    cpu = f" ({outcome.cpu:.2f} s CPU)" if outcome.cpu is not None else ""
    return (f"exit {outcome.code} after {outcome.elapsed:.2f} s{cpu}\n--- stderr ---\n{outcome.stderr[-3000:]}"
            f"\n--- stdout ---\n{outcome.stdout[:1000]}")


def assert_no_traceback(outcome: Outcome) -> None:
    text = outcome.stdout + outcome.stderr
    assert outcome.exception is None, describe(outcome)
    assert "Traceback" not in text and "Exception ignored" not in text, describe(outcome)


def assert_error_line(outcome: Outcome, *fragments: str, tmp: Path | None = None) -> str:
    """stderr is one line, "error: ...", holding every fragment. A fragment that is not a path
    under `tmp` must appear outside it (the test's folder name holds the case id)."""
    lines = re.split(r"\r\n|\r|\n", outcome.stderr.strip())
    assert len(lines) == 1, f"expected one line on stderr\n{describe(outcome)}"
    line = lines[0]
    assert line.startswith("error: "), describe(outcome)
    assert len(line) < 2000, f"an error line of {len(line):,} characters\n{describe(outcome)}"
    bare = line.replace(str(tmp), "<tmp>") if tmp is not None else line
    for fragment in fragments:
        inside = tmp is not None and fragment.startswith(str(tmp))
        assert fragment in (line if inside else bare), f"{fragment!r} not in the message\n{describe(outcome)}"
    return line


def verify(c: Case, tmp: Path, outcome: Outcome, *, cpu_bound: float | None = None) -> Outcome:
    """Check the contract on one case's run: code, no traceback, the one-line message, the time bound."""
    assert_no_traceback(outcome)
    assert outcome.code == c.code, f"expected exit {c.code}\n{describe(outcome)}"
    expect = [e.replace("{tmp}", str(tmp)) for e in c.expect]
    if c.code == 2:
        assert_error_line(outcome, *expect, tmp=tmp)
        assert outcome.stdout.strip() == "", f"an error run printed to stdout\n{describe(outcome)}"
    else:
        for fragment in expect:
            assert fragment in outcome.stdout, describe(outcome)
    limit = ISOLATED_SECONDS if c.heavy else IN_PROCESS_SECONDS
    assert outcome.elapsed < limit, f"took {outcome.elapsed:.1f} s (limit {limit:.0f} s)\n{describe(outcome)}"
    if cpu_bound is not None:
        assert outcome.cpu is not None and outcome.cpu < cpu_bound, \
            f"used {outcome.cpu} s of CPU (limit {cpu_bound:.0f} s)\n{describe(outcome)}"
    if c.check is not None:
        c.check(tmp, outcome)
    assert not list(tmp.rglob(".*.tmp")), "a temporary file was left behind"
    return outcome


class Background:
    """Subprocess work started on two worker threads at the module's first test, so it overlaps the
    in-process cases: every heavy case, and the subprocess part of the tests marked with
    `background_job`. Each test then takes its own result and checks it."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.jobs: dict[str, Future[Any]] = {}

    def submit(self, key: str, job: Callable[[], Any]) -> None:
        self.jobs[key] = self.pool.submit(job)

    def take(self, request: pytest.FixtureRequest, job: Callable[[], Any]) -> Any:
        """The result of this test's job: from its worker, or run here when no worker has started it."""
        future = self.jobs.pop(request.node.nodeid, None)
        if future is None or future.cancel():
            return job()
        return future.result()


JOBS: dict[str, Callable[..., Any]] = {}  # test name -> job(tmp, **params)
_background = Background()


def background_job(job: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run `job(tmp_path, **params)` for the test below on a worker; the test gets its result with take_job."""

    def decorate(test: Callable[..., Any]) -> Callable[..., Any]:
        JOBS[test.__name__] = job
        return test

    return decorate


def take_job(request: pytest.FixtureRequest, tmp: Path, **params: Any) -> Any:
    return _background.take(request, lambda: JOBS[request.node.originalname](tmp, **params))


def _heavy_run(tmp: Path, c: Case) -> tuple[Path, Outcome]:
    return tmp, run_isolated(list(c.build(tmp)))


@pytest.fixture(scope="module", autouse=True)
def background(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    here = sys.modules[__name__]
    saved_plan()  # here, not on a worker: CliRunner swaps sys.stdout, so it must only run on this thread
    for item in request.session.items:  # in the order the tests will want them
        if getattr(item, "module", None) is not here:
            continue
        params = dict(item.callspec.params) if hasattr(item, "callspec") else {}
        c = params.get("c")
        if isinstance(c, Case) and c.heavy:
            _background.submit(item.nodeid, functools.partial(_heavy_run, tmp_path_factory.mktemp("heavy"), c))
        elif item.originalname in JOBS:
            job = functools.partial(JOBS[item.originalname], tmp_path_factory.mktemp("job"), **params)
            _background.submit(item.nodeid, job)
    yield _background
    for future in _background.jobs.values():
        future.cancel()


def check_case(c: Case, tmp: Path, request: pytest.FixtureRequest, *, cpu_bound: float | None = None) -> Outcome:
    """Run one case (a heavy one in its capped subprocess, maybe already on a worker) and check it."""
    if c.heavy:
        tmp, outcome = _background.take(request, lambda: _heavy_run(tmp, c))
    else:
        outcome = run_in_process(list(c.build(tmp)))
    return verify(c, tmp, outcome, cpu_bound=cpu_bound)


def ids(cases: Sequence[Case]) -> list[Any]:
    return [pytest.param(c, id=c.id) for c in cases]


# ============================================================================= 1. numbers and names on the command line

DEPLOY = ("deploy", "--inventory", HOMELAB, *M8B)
SMI_CSV = str(DETECT_DATA / "nvidia-smi-homelab.csv")

CLI_CASES = [
    case("users-2^63", fixed("memory", *M8B, "--users", "9223372036854775808"), "--users"),
    case("users-0", fixed("memory", *M8B, "--users", "0"), "--users"),
    case("users--1", fixed("memory", *M8B, "--users", "-1"), "--users"),
    case("users-1e3", fixed("memory", *M8B, "--users", "1e3"), "--users"),
    case("deploy-users-0", fixed(*DEPLOY, "--users", "0"), "--users"),
    case("context-1e9", fixed("memory", *M8B, "--context", "1e9"), "--context"),
    case("context-2^40", fixed("memory", *M8B, "--context", str(2**40)), "--context"),
    case("context-beyond-model", fixed("memory", *M8B, "--context", "999999"), "--context", "131,072"),
    case("prompt-tokens-0", fixed(*DEPLOY, "--prompt-tokens", "0"), "--prompt-tokens"),
    case("prefill-chunk-0", fixed("memory", *M8B, "--prefill-chunk", "0"), "--prefill-chunk"),
    case("runtime-reserve-inf", fixed("memory", *M8B, "--runtime-reserve-gib", "inf"), "--runtime-reserve-gib"),
    case("runtime-reserve-nan", fixed("memory", *M8B, "--runtime-reserve-gib", "nan"), "--runtime-reserve-gib",
         "NaN is not a number"),
    case("runtime-reserve--1", fixed("memory", *M8B, "--runtime-reserve-gib", "-1"), "--runtime-reserve-gib"),
    case("time-limit-nan", fixed(*DEPLOY, "--time-limit", "nan"), "--time-limit", "NaN is not a number"),
    case("time-limit-inf", fixed(*DEPLOY, "--time-limit", "inf"), "--time-limit"),
    case("time-limit-0", fixed(*DEPLOY, "--time-limit", "0"), "--time-limit"),
    case("time-limit--inf", fixed(*DEPLOY, "--time-limit=-inf"), "--time-limit"),
    case("min-tokens-per-s-nan", fixed(*DEPLOY, "--min-tokens-per-s", "nan"), "--min-tokens-per-s", "NaN is not a number"),
    case("min-tokens-per-s-0", fixed(*DEPLOY, "--min-tokens-per-s", "0"), "--min-tokens-per-s"),
    case("gpu-memory-utilization-1.5", fixed(*DEPLOY, "--gpu-memory-utilization", "1.5"), "--gpu-memory-utilization"),
    case("gpu-memory-utilization-nan", fixed(*DEPLOY, "--gpu-memory-utilization", "NaN"), "--gpu-memory-utilization",
         "NaN is not a number"),
    case("overhead--0.1", fixed("memory", *M8B, "--overhead", "-0.1"), "--overhead"),
    case("overhead-nan", fixed("memory", *M8B, "--overhead", "nan"), "--overhead", "NaN is not a number"),
    case("params-1e400", fixed("memory", "--params", "1e400"), "--params"),
    case("params-nan", fixed("memory", "--params", "nan"), "--params", "NaN is not a number"),
    case("params-inf", fixed("memory", "--params", "inf"), "--params"),
    case("params-0", fixed("memory", "--params", "0"), "--params"),
    case("params--7B", fixed("memory", "--params=-7B"), "--params"),
    case("params-lots", fixed("memory", "--params", "lots"), "--params"),
    case("params-1e16", fixed("memory", "--params", "1e16"), "--params"),
    case("largest-layer-params-nan", fixed("memory", "--params", "7B", "--mode", "train", "--zero-stage", "3",
                                           "--estimator", "deepspeed", "--largest-layer-params", "nan"),
         "--largest-layer-params", "NaN is not a number"),
    case("weights-int4-g0", fixed("memory", *M8B, "--weights", "int4-g0"), "--weights"),
    case("weights-int4-g99999999999", fixed("memory", *M8B, "--weights", "int4-g99999999999"), "--weights"),
    case("weights-5000-bytes", fixed("memory", *M8B, "--weights", "q" * 5000), "--weights"),
    case("kv-cache-fp9", fixed("memory", *M8B, "--kv-cache", "fp9"), "--kv-cache"),
    case("experts-unknown", fixed("memory", *M8B, "--experts", "fp3"), "--experts"),
    case("tensor-parallel-0", fixed("memory", *M8B, "-tp", "0"), "--tensor-parallel-size"),
    case("tensor-parallel-3", fixed("memory", *M8B, "-tp", "3"), "--tensor-parallel-size"),
    case("format-xml", fixed("formats", "--format", "xml"), "--format"),
    case("hardware-filter-min_memory_gib-abc", fixed("hardware", "list", "--filter", "min_memory_gib=abc"),
         "--filter", "min_memory_gib"),
    case("hardware-filter-min_memory_gib-nan", fixed("hardware", "list", "--filter", "min_memory_gib=nan"),
         "--filter", "min_memory_gib", "NaN is not a number"),
    case("hardware-filter-nope", fixed("hardware", "list", "--filter", "nope=1"), "--filter", "nope"),
    case("hardware-show-unknown", fixed("hardware", "show", "rtx-9999"), "rtx-9999"),
    case("hardware-show-5000-bytes", fixed("hardware", "show", "x" * 5000), "ID"),
    case("models-show-unknown", fixed("models", "show", "qwen-3-8b"), "qwen-3-8b"),
    case("models-show-empty", fixed("models", "show", ""), "model"),
    case("models-list-family-unknown", fixed("models", "list", "--family", "nope"), "--family"),
    case("model-300-bytes", fixed("memory", "--model", "m" * 300), "--model"),
    case("model-5000-bytes", fixed("memory", "--model", "m" * 5000), "--model"),
    case("model-5000-bytes-path", fixed("memory", "--model", "/" + "m/" * 2500), "--model"),
    case("model-empty", fixed("memory", "--model", ""), "--model"),
    case("model-blank", fixed("memory", "--model", "   "), "--model"),
    case("model-nonexistent-gguf", fixed("memory", "--model", "/nonexistent/x.gguf"), "--model", "/nonexistent/x.gguf"),
    case("model-nonexistent-folder", fixed("memory", "--model", "./no/such/folder"), "--model", "./no/such/folder"),
    case("deploy-model-5000-bytes", fixed("deploy", "--inventory", HOMELAB, "--model", "m" * 5000), "--model"),
    case("inventory-5000-bytes", fixed("deploy", "--inventory", "i" * 5000, *M8B), "--inventory"),
    case("inventory-missing", fixed("deploy", "--inventory", "{tmp}/none.yaml", *M8B), "{tmp}/none.yaml"),
    case("output-5000-bytes", fixed(*DEPLOY, "-o", "{tmp}/" + "o" * 5000), "--output"),
]


@pytest.mark.parametrize("c", ids(CLI_CASES))
def test_command_line_values(c: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    check_case(c, tmp_path, request)


# ============================================================================= 2. options of the other mode

MODE_CASES = [
    case("deploy-serve-lora-rank", fixed(*DEPLOY, "--lora-rank", "8"), "--lora-rank"),
    case("deploy-serve-qlora", fixed(*DEPLOY, "--qlora"), "--qlora"),
    case("deploy-serve-zero-stage", fixed(*DEPLOY, "--zero-stage", "2"), "--zero-stage"),
    case("deploy-serve-global-batch-size", fixed(*DEPLOY, "--global-batch-size", "8"), "--global-batch-size"),
    case("deploy-serve-optimizer", fixed(*DEPLOY, "--optimizer", "sgd"), "--optimizer"),
    case("memory-serve-zero-stage-3", fixed("memory", *M8B, "--zero-stage", "3"), "--zero-stage"),
    case("memory-serve-lora-rank", fixed("memory", *M8B, "--lora-rank", "8"), "--lora-rank"),
    case("memory-serve-estimator", fixed("memory", *M8B, "--estimator", "deepspeed"), "--estimator"),
    case("memory-serve-sequence-parallel", fixed("memory", *M8B, "--sequence-parallel"), "--sequence-parallel"),
    case("deploy-train-users", fixed("deploy", "--mode", "train", "--inventory", HOMELAB, *M8B, "--users", "4"), "--users"),
    case("deploy-train-objective", fixed("deploy", "--mode", "train", "--inventory", HOMELAB, *M8B, "--objective",
                                         "latency"), "--objective"),
    case("deploy-train-kv-cache", fixed("deploy", "--mode", "train", "--inventory", HOMELAB, *M8B, "--kv-cache", "fp8"),
         "--kv-cache"),
    case("memory-train-users", fixed("memory", *M8B, "--mode", "train", "--users", "2"), "--users"),
    case("memory-train-lora-rank-0", fixed("memory", *M8B, "--mode", "train", "--lora-rank", "0"), "--lora-rank"),
]


@pytest.mark.parametrize("c", ids(MODE_CASES))
def test_options_of_the_other_mode(c: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    check_case(c, tmp_path, request)


# ============================================================================= 3. config.json

def _layer_types_million() -> str:
    return config_text(tiny_config(num_hidden_layers=10**6, layer_types=Raw(json.dumps(["full"] * 10**6))))


CONFIG_CASES = [
    config_case("valid", tiny_config(), code=0),
    config_case("top-k-above-experts", tiny_config(num_local_experts=4, num_experts_per_tok=8, moe_intermediate_size=32),
                "num_experts_per_tok"),
    config_case("num_hidden_layers-NaN", tiny_config(num_hidden_layers=Raw("NaN")), "num_hidden_layers",
                "NaN is not a number"),
    config_case("hidden_size-NaN", tiny_config(hidden_size=Raw("NaN")), "hidden_size", "NaN is not a number"),
    config_case("num_key_value_heads-NaN", tiny_config(num_key_value_heads=Raw("NaN")), "num_key_value_heads",
                "NaN is not a number"),
    config_case("hidden_size-Infinity", tiny_config(hidden_size=Raw("Infinity")), "hidden_size"),
    config_case("vocab_size--Infinity", tiny_config(vocab_size=Raw("-Infinity")), "vocab_size"),
    config_case("num_hidden_layers-string", tiny_config(num_hidden_layers="32"), "num_hidden_layers"),
    config_case("hidden_size-string", tiny_config(hidden_size="32"), "hidden_size"),
    config_case("num_key_value_heads-string", tiny_config(num_key_value_heads="2"), "num_key_value_heads"),
    config_case("num_key_value_heads-0", tiny_config(num_key_value_heads=0), "num_key_value_heads"),
    config_case("num_key_value_heads-3-of-4", tiny_config(num_key_value_heads=3), "num_key_value_heads"),
    config_case("num_attention_heads-true", tiny_config(num_attention_heads=True), "num_attention_heads"),
    config_case("num_hidden_layers-4.5", tiny_config(num_hidden_layers=4.5), "num_hidden_layers"),
    config_case("hidden_size-1e300", tiny_config(hidden_size=1e300), "hidden_size"),
    config_case("head_dim-0", tiny_config(head_dim=0), "head_dim"),
    config_case("intermediate_size-list", tiny_config(intermediate_size=[1, 2]), "intermediate_size"),
    config_case("tie_word_embeddings-string", tiny_config(tie_word_embeddings="yes"), "tie_word_embeddings"),
    config_case("missing-vocab_size", tiny_config(vocab_size=DROP), "vocab_size"),
    config_case("layer_types-5", tiny_config(layer_types=5), "layer_types"),
    config_case("layer_types-wrong-length", tiny_config(layer_types=["full_attention"] * 3), "layer_types"),
    config_case("layer_types-mamba", tiny_config(layer_types=["mamba"] * 4), "layer_types"),
    config_case("layer_types-unknown", tiny_config(layer_types=["full_attention"] * 3 + ["weird"]), "layer_types"),
    config_case("layer_types-numbers", tiny_config(layer_types=[1, 2, 3, 4]), "layer_types"),
    config_case("sliding_window-string", tiny_config(sliding_window="abc", layer_types=["sliding_attention"] * 4),
                "sliding_window"),
    config_case("kv_lora_rank-alone", tiny_config(kv_lora_rank=16), "kv_lora_rank", "qk_rope_head_dim"),
    config_case("kv_lora_rank-NaN", tiny_config(kv_lora_rank=Raw("NaN"), qk_rope_head_dim=8, qk_nope_head_dim=8,
                                                v_head_dim=16), "kv_lora_rank"),
    config_case("experts-without-top-k", tiny_config(num_local_experts=4, moe_intermediate_size=32), "num_experts_per_tok"),
    config_case("num_local_experts-2^40", tiny_config(num_local_experts=2**40, num_experts_per_tok=2), "num_local_experts"),
    config_case("nested-100000-in-object", '{"a": ' + deep_json(100_000) + "}", "nested", heavy=True),
    config_case("nested-100000-top-level", deep_json(100_000), "nested", heavy=True),
    config_case("nested-60-in-known-key", config_text(tiny_config(rope_scaling=Raw(deep_json(60)))), "nested"),
    config_case("layers-10^6", tiny_config(num_hidden_layers=10**6), "num_hidden_layers", heavy=True),
    config_case("layers-10^6-with-layer_types", _layer_types_million(), "num_hidden_layers", heavy=True),
    config_case("max_position_embeddings-1e300", tiny_config(max_position_embeddings=1e300), "max_position_embeddings"),
    config_case("jamba", tiny_config(model_type="jamba", attn_layer_period=8, attn_layer_offset=4, expert_layer_period=2,
                                     expert_layer_offset=1, mamba_d_state=16, mamba_d_conv=4), "jamba"),
    config_case("jamba-keys-under-unknown-model_type",
                tiny_config(model_type="my_hybrid", attn_layer_period=8, attn_layer_offset=4, expert_layer_period=2,
                            expert_layer_offset=1, mamba_d_state=16), "attn_layer_period"),
    config_case("unknown-model_type-unknown-key", tiny_config(model_type="my_model", frobnicate_factor=3),
                "frobnicate_factor"),
    config_case("text_config-5", tiny_config(text_config=5), "text_config"),
    config_case("text_config-NaN-layers", {"model_type": "wrapper", "text_config": tiny_config(num_hidden_layers=Raw("NaN"))},
                "num_hidden_layers", "NaN is not a number"),
    config_case("model_type-5", tiny_config(model_type=5), "model_type"),
    config_case("model_type-list", tiny_config(model_type=["llama"]), "model_type"),
    config_case("empty-file", "", "JSON"),
    config_case("whitespace-only", "  \n\n  ", "JSON"),
    config_case("invalid-utf8", b'{"model_type": "ll\xff\xfeama"}', "UTF-8"),
    config_case("utf16-bom", '{"model_type": "llama"}'.encode("utf-16"), "UTF-8"),
    config_case("json-list", "[1, 2, 3]", "object"),
    config_case("json-string", '"llama"', "object"),
    config_case("json-null", "null", "object"),
    config_case("truncated", config_text(tiny_config())[:60], "JSON"),
    config_case("duplicate-keys-last-wins-is-refused", '{"num_hidden_layers": 4, "num_hidden_layers": NaN}',
                "num_hidden_layers"),
    config_case("17-MB-file", " " * (17 * 2**20) + "{}", "limit", heavy=True),
    config_case("vocab_size-5000-digits", tiny_config(vocab_size=Raw("9" * 5000)), "vocab_size"),
    config_case("unread-key-5000-digits", tiny_config(rope_theta=Raw("9" * 5000))),
]


@pytest.mark.parametrize("c", ids(CONFIG_CASES))
def test_config_json(c: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    check_case(c, tmp_path, request)


# ============================================================================= 4. safetensors checkpoints

def _no_passwd(tmp: Path, outcome: Outcome) -> None:
    assert "root:" not in outcome.stdout + outcome.stderr


def _overlapping() -> dict[str, Any]:
    entries = tensor_entries()
    entries["lm_head.weight"] = dict(entries["lm_head.weight"], data_offsets=entries["model.embed_tokens.weight"]["data_offsets"])
    return entries


def _entry_with(name: str = "model.norm.weight", **fields: Any) -> dict[str, Any]:
    entries = tensor_entries()
    entries[name] = dict(entries[name], **fields)
    return entries


def _with_metadata(metadata: Any) -> dict[str, Any]:
    return {"__metadata__": metadata, **tensor_entries()}


def _sharded(weight_map: dict[str, Any]) -> dict[str, Any]:
    names = dict.fromkeys(tensor_entries(), "model.safetensors")
    return index_of({**names, **weight_map})


SAFETENSORS_CASES = [
    checkpoint_case("valid", code=0),
    checkpoint_case("__metadata__-list", "{tmp}/ckpt/model.safetensors", "__metadata__", header=_with_metadata([1, 2])),
    checkpoint_case("__metadata__-numbers", "{tmp}/ckpt/model.safetensors", "__metadata__",
                    header=_with_metadata({"format": 5})),
    checkpoint_case("quantization_config-string", "{tmp}/ckpt/config.json", "quantization_config",
                    config=checkpoint_config(quantization_config="gptq")),
    checkpoint_case("quantization_config-bits-four", "{tmp}/ckpt/config.json", "bits",
                    config=checkpoint_config(quantization_config={"quant_method": "gptq", "bits": "four"})),
    checkpoint_case("quantization_config-bits-NaN", "{tmp}/ckpt/config.json", "bits",
                    config=checkpoint_config(quantization_config={"quant_method": "gptq", "bits": Raw("NaN")})),
    checkpoint_case("quantization_config-config_groups-list", "{tmp}/ckpt/config.json", "config_groups",
                    config=checkpoint_config(quantization_config={"quant_method": "compressed-tensors",
                                                                  "config_groups": [1, 2]})),
    checkpoint_case("quantization_config-num_bits-string", "{tmp}/ckpt/config.json", "num_bits",
                    config=checkpoint_config(quantization_config={
                        "quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": "4"}}}})),
    checkpoint_case("quantization_config-quant_method-5", "{tmp}/ckpt/config.json", "quant_method",
                    config=checkpoint_config(quantization_config={"quant_method": 5})),
    checkpoint_case("index-weight_map-numbers", "model.safetensors.index.json", "weight_map",
                    index=_sharded({"model.norm.weight": 5})),
    checkpoint_case("index-weight_map-lists", "model.safetensors.index.json", "weight_map",
                    index=_sharded({"model.norm.weight": ["model.safetensors"]})),
    checkpoint_case("index-weight_map-list", "model.safetensors.index.json", "weight_map",
                    index={"weight_map": ["model.safetensors"]}),
    checkpoint_case("index-a-list", "model.safetensors.index.json", "weight_map", index="[1, 2]"),
    checkpoint_case("index-parent-path", "outside the model folder", "weight_map", "model.safetensors.index.json",
                    index=_sharded({"model.norm.weight": "../../../../../../etc/passwd"}), check=_no_passwd),
    checkpoint_case("index-absolute-path", "outside the model folder", "weight_map", "model.safetensors.index.json",
                    index=_sharded({"model.norm.weight": "/etc/passwd"}), check=_no_passwd),
    checkpoint_case("index-nul-in-name", "outside the model folder", "model.safetensors.index.json",
                    index=_sharded({"model.norm.weight": "model.safetensors\u0000.txt"})),
    checkpoint_case("index-missing-shard", "model.safetensors.index.json", "missing.safetensors",
                    index=_sharded({"model.norm.weight": "missing.safetensors"})),
    checkpoint_case("index-nested-deep", "model.safetensors.index.json", "nested",
                    index='{"weight_map": ' + deep_json(100_000) + "}", heavy=True),
    checkpoint_case("overlapping-tensors", "{tmp}/ckpt/model.safetensors", "lm_head.weight", "overlap",
                    header=_overlapping()),
    checkpoint_case("header-length-beyond-file", "{tmp}/ckpt/model.safetensors", "header length",
                    length=2**40),
    checkpoint_case("header-length-2^64-1", "{tmp}/ckpt/model.safetensors", "header length",
                    length=2**64 - 1),
    checkpoint_case("header-length-beyond-file-single-file", "{tmp}/ckpt/model.safetensors", "header length",
                    length=2**40, target="model.safetensors"),
    checkpoint_case("header-nested-deep", "{tmp}/ckpt/model.safetensors", "nested",
                    header='{"a": ' + deep_json(100_000) + "}", data=0, heavy=True),
    checkpoint_case("header-a-list", "{tmp}/ckpt/model.safetensors", "object", header="[1, 2, 3]", data=0),
    checkpoint_case("header-not-utf8", "{tmp}/ckpt/model.safetensors", "JSON", header=b'{"\xff": 1}', data=0),
    checkpoint_case("shape-negative", "{tmp}/ckpt/model.safetensors", "model.norm.weight",
                    header=_entry_with(shape=[-64])),
    checkpoint_case("shape-float", "{tmp}/ckpt/model.safetensors", "model.norm.weight",
                    header=_entry_with(shape=[64.0])),
    checkpoint_case("shape-string", "{tmp}/ckpt/model.safetensors", "model.norm.weight",
                    header=_entry_with(shape="64")),
    checkpoint_case("shape-2^62-squared", "{tmp}/ckpt/model.safetensors", "model.norm.weight",
                    header=_entry_with(shape=[2**62, 2**62])),
    checkpoint_case("data_offsets-reversed", "{tmp}/ckpt/model.safetensors", "model.norm.weight",
                    header=_entry_with(data_offsets=[10, 2])),
    checkpoint_case("data_offsets-three", "{tmp}/ckpt/model.safetensors", "model.norm.weight",
                    header=_entry_with(data_offsets=[0, 1, 2])),
    checkpoint_case("shape-5000-digits", "{tmp}/ckpt/model.safetensors",
                    header=json.dumps(tensor_entries()).replace("[64]", "[" + "9" * 5000 + "]", 1), data=0),
    checkpoint_case("index-5000-digits", "model.safetensors.index.json",
                    index='{"metadata": {"total_size": ' + "9" * 5000 + '}, "weight_map": {}}'),
    checkpoint_case("dtype-number", "{tmp}/ckpt/model.safetensors", "model.norm.weight",
                    header=_entry_with(dtype=16)),
    checkpoint_case("entry-a-string", "{tmp}/ckpt/model.safetensors", "model.norm.weight",
                    header={**tensor_entries(), "model.norm.weight": "F16"}),
    case("file-shorter-than-8-bytes",
         lambda tmp: (_write_short(tmp), ["memory", "--model", str(tmp / "ckpt")])[1],
         "{tmp}/ckpt/model.safetensors", "8-byte"),
    case("safetensors-file-without-config",
         lambda tmp: (_write_lone(tmp), ["memory", "--model", str(tmp / "lone" / "model.safetensors")])[1],
         "{tmp}/lone/model.safetensors", "config.json"),
]


def _write_short(tmp: Path) -> None:
    folder = tmp / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(checkpoint_config()))
    (folder / "model.safetensors").write_bytes(b"\x01\x02")


def _write_lone(tmp: Path) -> None:
    (tmp / "lone").mkdir()
    (tmp / "lone" / "model.safetensors").write_bytes(b"\x00" * 16)


@pytest.mark.parametrize("c", ids(SAFETENSORS_CASES))
def test_safetensors(c: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    check_case(c, tmp_path, request)


# ============================================================================= 5. GGUF

def _truncated(at: int) -> bytes:
    return gguf_bytes()[:at]


def _block_count(vtype: int, payload: bytes) -> bytes:
    return gguf_bytes(list(gguf_metadata(llama__block_count=g_kv("llama.block_count", vtype, payload)).values()))


def _huge_array() -> bytes:
    claim = g_kv("tokenizer.ggml.tokens", G_ARRAY, struct.pack("<IQ", G_STRING, 10**7))
    return gguf_bytes([*gguf_metadata().values(), claim], with_tensors=False)


def _huge_numeric_array() -> bytes:
    claim = g_kv("llama.attention.head_count", G_ARRAY, struct.pack("<IQ", G_UINT32, 10**7))
    return gguf_bytes([*gguf_metadata(llama__attention__head_count=None).values(), claim], with_tensors=False)


def _nested_arrays() -> bytes:
    payload = struct.pack("<IQ", G_ARRAY, 1) * 10 + struct.pack("<IQ", G_UINT32, 0)
    return gguf_bytes([*gguf_metadata().values(), g_kv("x.nested", G_ARRAY, payload)], with_tensors=False)


GGUF_CASES = [
    gguf_case("valid", gguf_bytes(), code=0),
    gguf_case("block_count-2^63", lambda: _block_count(G_UINT64, struct.pack("<Q", 2**63)), "llama.block_count"),
    gguf_case("block_count-2^32-1", lambda: _block_count(G_UINT32, struct.pack("<I", 2**32 - 1)), "llama.block_count"),
    gguf_case("block_count-string", lambda: _block_count(G_STRING, g_text("32")), "llama.block_count"),
    gguf_case("block_count-NaN", lambda: _block_count(G_FLOAT32, struct.pack("<f", math.nan)), "llama.block_count",
              "NaN is not a number"),
    gguf_case("block_count-inf", lambda: _block_count(G_FLOAT32, struct.pack("<f", math.inf)), "llama.block_count"),
    gguf_case("block_count-0", lambda: _block_count(G_UINT32, struct.pack("<I", 0)), "llama.block_count"),
    gguf_case("head_count_kv-0", lambda: gguf_bytes(list(gguf_metadata(
        llama__attention__head_count_kv=g_u32("llama.attention.head_count_kv", 0)).values())),
        "llama.attention.head_count_kv"),
    gguf_case("embedding_length-string-array", lambda: gguf_bytes(list(gguf_metadata(
        llama__embedding_length=g_kv("llama.embedding_length", G_ARRAY, struct.pack("<IQ", G_STRING, 1) + g_text("64"))
    ).values())), "llama.embedding_length"),
    gguf_case("array-claims-10^7-strings-in-300-bytes", _huge_array, "tokenizer.ggml.tokens", heavy=True),
    gguf_case("array-claims-10^7-numbers", _huge_numeric_array, "llama.attention.head_count", heavy=True),
    gguf_case("arrays-nested-10-deep", _nested_arrays, "x.nested"),
    gguf_case("claims-a-million-keys", lambda: gguf_bytes(n_kv=10**6), "keys", heavy=True),
    gguf_case("claims-2^64-1-keys", lambda: gguf_bytes(n_kv=2**64 - 1), "keys", heavy=True),
    gguf_case("claims-a-million-tensors", lambda: gguf_bytes(n_tensors=10**6), "tensors", heavy=True),
    gguf_case("string-length-2^63", lambda: gguf_bytes([g_kv("general.architecture", G_STRING,
                                                             struct.pack("<Q", 2**63) + b"llama")]),
              "general.architecture"),
    gguf_case("no-architecture", lambda: gguf_bytes(list(gguf_metadata(general__architecture=None).values())),
              "general.architecture"),
    gguf_case("architecture-a-number", lambda: gguf_bytes(list(gguf_metadata(
        general__architecture=g_u32("general.architecture", 7)).values())), "general.architecture"),
    gguf_case("alignment-0", lambda: gguf_bytes([*gguf_metadata().values(), g_u32("general.alignment", 0)]),
              "general.alignment"),
    gguf_case("version-1", lambda: gguf_bytes(version=1), "version"),
    gguf_case("version-big-endian", lambda: gguf_bytes(version=3 << 24), "version"),
    gguf_case("empty-file", b"", "empty"),
    gguf_case("not-gguf", b"PK\x03\x04 a zip file, not a model", "not a GGUF file"),
    gguf_case("truncated-after-magic", lambda: _truncated(4), "version"),
    gguf_case("truncated-in-counts", lambda: _truncated(12), "count"),
    gguf_case("truncated-in-first-key", lambda: _truncated(30), "keys"),
    gguf_case("truncated-in-metadata", lambda: _truncated(120)),
    gguf_case("truncated-in-tensor-infos", lambda: _truncated(420)),
    gguf_case("truncated-in-data", lambda: _truncated(len(gguf_bytes()) - 100)),
]


@pytest.mark.parametrize("c", ids(GGUF_CASES))
def test_gguf(c: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    check_case(c, tmp_path, request)


# ============================================================================= 6. inventories

INVENTORY_COMMANDS = {
    "validate": lambda path: ["inventory", "validate", path],
    "show": lambda path: ["inventory", "show", path, "--format", "json"],
    "deploy": lambda path: ["deploy", "--inventory", path, "--model", "llama-3.2-1b", "--time-limit", "20"],
}


def _resolved_devices(command: str, outcome: Outcome) -> int:
    if command == "validate":
        return int(outcome.stdout.split(" device(s)")[0].rsplit(", ", 1)[-1])
    data = json.loads(outcome.stdout)
    return len(data["devices"]) if isinstance(data.get("devices"), list) else data["devices"]


def inventory_run(c: Any, command: str) -> Case:
    """One inventory case under one command: the file at <tmp>/inventory.yaml, named in the error."""

    def build(tmp: Path) -> list[str]:
        path = tmp / "inventory.yaml"
        path.write_bytes(c.content.encode() if isinstance(c.content, str) else c.content)
        return INVENTORY_COMMANDS[command](str(path))

    def check(tmp: Path, outcome: Outcome) -> None:
        if c.devices is not None and command != "deploy":
            assert _resolved_devices(command, outcome) == c.devices, outcome.stdout[:2000]

    expect = ("{tmp}/inventory.yaml", *c.expect) if c.code == 2 else ()
    return Case(id=f"{c.id}-{command}", build=build, code=c.code, expect=expect, heavy=c.heavy, check=check)


INVENTORY_RUNS = [inventory_run(c, command) for c in INVENTORY_CASES for command in INVENTORY_COMMANDS]


@pytest.mark.parametrize("c", ids(INVENTORY_RUNS))
def test_inventory(c: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    check_case(c, tmp_path, request)


# ============================================================================= 7. inventory detect --from-file

DETECT_CASES = [
    case("valid-system-profiler", fixed("inventory", "detect", "--from-file",
                                        str(DETECT_DATA / "system-profiler-m2-ultra.json"), "--node-name", "here"),
         "m2-ultra", code=0),
    detect_case("SPHardwareDataType-a-dict", system_profiler(hardware={"chip_type": "Apple M2 Ultra"}),
                "SPHardwareDataType", name="sp.json"),
    detect_case("SPHardwareDataType-list-of-strings", system_profiler(hardware=["Apple M2 Ultra", "192 GB"]),
                "SPHardwareDataType", name="sp.json"),
    detect_case("SPHardwareDataType-empty-list", system_profiler(hardware=[]), "chip_type", name="sp.json"),
    detect_case("SPDisplaysDataType-a-string", system_profiler(displays="gpu"), "SPDisplaysDataType", name="sp.json"),
    detect_case("chip_type-a-number", system_profiler(chip_type=2), "chip_type", name="sp.json"),
    detect_case("physical_memory-a-list", system_profiler(physical_memory=["192 GB"]), "physical_memory", name="sp.json"),
    detect_case("physical_memory-10^18-GB", system_profiler(physical_memory="1000000000000000000 GB"), "physical_memory",
                name="sp.json"),
    detect_case("sppci_cores-abc", system_profiler(sppci_cores="abc"), "sppci_cores", name="sp.json"),
    detect_case("sppci_cores-NaN", system_profiler().replace('"76"', "NaN"), "sppci_cores", name="sp.json"),
    detect_case("sppci_cores-5000-digits", system_profiler(sppci_cores="9" * 5000), "sppci_cores", name="sp.json"),
    detect_case("sppci_cores-5000-digits-number", system_profiler().replace('"76"', "9" * 5000), "sp.json",
                name="sp.json"),
    detect_case("physical_memory-5000-digits", system_profiler(physical_memory="9" * 5000 + " GB"), "physical_memory",
                name="sp.json"),
    detect_case("system-profiler-a-list", "[1, 2]", "SPHardwareDataType", name="sp.json",
                extra=("--source-format", "system-profiler")),
    detect_case("system-profiler-nested-deep", '{"a": ' + deep_json(100_000) + "}", "nested", name="sp.json", heavy=True),
    detect_case("csv-unknown-gpu", "index, name, memory.total [MiB]\n0, NVIDIA Mystery GPU 9000, 1000 MiB\n",
                "Mystery GPU 9000", name="smi.csv"),
    detect_case("csv-no-name-column", "index, memory.total [MiB]\n0, 1000 MiB\n", "name", name="smi.csv"),
    detect_case("csv-100000-gpus", "index, name\n" + "0, NVIDIA GeForce RTX 4090\n" * 100_000, "GPUs", name="smi.csv"),
    detect_case("csv-binary", bytes(range(256)), "UTF-8", name="smi.csv"),
    detect_case("csv-pcie-gen-5000-digits", "index, name, memory.total [MiB], pcie.link.gen.max\n"
                "0, NVIDIA GeForce RTX 4090, 24564 MiB, " + "9" * 5000 + "\n", "pcie.link.gen.max", name="smi.csv"),
    detect_case("xml-not-xml", "<nvidia_smi_log><gpu><product_name>H100", "not valid XML", name="smi.xml"),
    detect_case("xml-billion-laughs", XML_BOMB, "XML", name="smi.xml", heavy=True),
    detect_case("xml-external-entity", '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                "<nvidia_smi_log><gpu><product_name>&e;</product_name></gpu></nvidia_smi_log>", "XML", name="smi.xml"),
    detect_case("xml-no-gpus", "<nvidia_smi_log></nvidia_smi_log>", "gpu", name="smi.xml"),
    detect_case("xml-given-as-system-profiler", "<nvidia_smi_log/>", "JSON", name="smi.xml",
                extra=("--source-format", "system-profiler")),
    detect_case("empty-file", "", "GPU", name="empty.txt"),
    case("node-name-with-spaces", fixed("inventory", "detect", "--from-file", SMI_CSV, "--node-name", "my box"),
         "--node-name", "my box"),
    case("from-file-missing", fixed("inventory", "detect", "--from-file", "{tmp}/none.csv"), "{tmp}/none.csv"),
]


@pytest.mark.parametrize("c", ids(DETECT_CASES))
def test_inventory_detect(c: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    check_case(c, tmp_path, request)


# ============================================================================= 8. special files as inputs

def _fifo(tmp: Path, name: str) -> str:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return str(path)


def _link(tmp: Path, name: str, target: str) -> str:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return str(path)


def special(id: str, build: Callable[[Path], Sequence[str]], *expect: str) -> Case:
    return case(id, build, *expect, heavy=True)


def _model_folder(tmp: Path, folder: str, *, config: Callable[[Path], Any] | None = None,
                  shard: Callable[[Path], Any] | None = None) -> list[str]:
    """`plan memory --model <tmp>/<folder>` where config.json and model.safetensors are made by the callables."""
    path = tmp / folder
    path.mkdir()
    (config or (lambda p: p.write_text(json.dumps(checkpoint_config()))))(path / "config.json")
    if shard is not None:
        shard(path / "model.safetensors")
    return ["memory", "--model", str(path)]


def _make_fifo(path: Path) -> None:
    os.mkfifo(path)


def _link_to_dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


SPECIAL_CASES = [
    special("fifo-as-inventory-deploy", lambda t: ["deploy", "--inventory", _fifo(t, "inv.yaml"), *M8B], "{tmp}/inv.yaml",
            "FIFO"),
    special("fifo-as-inventory-validate", lambda t: ["inventory", "validate", _fifo(t, "inv.yaml")], "{tmp}/inv.yaml",
            "FIFO"),
    special("fifo-as-inventory-show", lambda t: ["inventory", "show", _fifo(t, "inv.yaml")], "{tmp}/inv.yaml", "FIFO"),
    special("fifo-as-model-gguf", lambda t: ["memory", "--model", _fifo(t, "x.gguf")], "{tmp}/x.gguf", "FIFO"),
    special("fifo-as-model-safetensors", lambda t: ["memory", "--model", _fifo(t, "x.safetensors")], "{tmp}/x.safetensors"),
    special("fifo-as-model-config-json", lambda t: ["memory", "--model", _fifo(t, "config.json")], "{tmp}/config.json",
            "FIFO"),
    special("fifo-config-json-in-folder", lambda t: _model_folder(t, "m", config=_make_fifo), "{tmp}/m/config.json", "FIFO"),
    special("fifo-shard-in-folder", lambda t: _model_folder(t, "c", shard=_make_fifo), "{tmp}/c/model.safetensors"),
    special("fifo-as-from-file", lambda t: ["inventory", "detect", "--from-file", _fifo(t, "smi.csv")], "{tmp}/smi.csv",
            "FIFO"),
    special("fifo-as-plan", lambda t: ["show", _fifo(t, "plan.yaml")], "{tmp}/plan.yaml", "FIFO"),
    special("dev-zero-as-inventory", lambda t: ["deploy", "--inventory", "/dev/zero", *M8B], "/dev/zero"),
    special("dev-zero-as-inventory-validate", lambda t: ["inventory", "validate", "/dev/zero"], "/dev/zero"),
    special("dev-urandom-as-inventory", lambda t: ["inventory", "show", "/dev/urandom"], "/dev/urandom"),
    special("dev-zero-as-model", lambda t: ["memory", "--model", "/dev/zero"], "/dev/zero"),
    special("dev-urandom-as-model", lambda t: ["memory", "--model", "/dev/urandom"], "/dev/urandom"),
    special("symlink-zero-gguf-to-dev-zero", lambda t: ["memory", "--model", _link(t, "zero.gguf", "/dev/zero")],
            "{tmp}/zero.gguf"),
    special("symlink-shard-to-dev-zero", lambda t: _model_folder(t, "z", shard=_link_to_dev_zero),
            "{tmp}/z/model.safetensors"),
    special("symlink-config-json-to-dev-urandom", lambda t: ["memory", "--model", _link(t, "u/config.json", "/dev/urandom")],
            "{tmp}/u/config.json"),
    special("dev-zero-as-from-file", lambda t: ["inventory", "detect", "--from-file", "/dev/zero"], "/dev/zero"),
    special("dev-urandom-as-from-file", lambda t: ["inventory", "detect", "--from-file", "/dev/urandom"], "/dev/urandom"),
    special("dev-zero-as-plan", lambda t: ["show", "/dev/zero"], "/dev/zero"),
    special("folder-as-inventory", lambda t: ["inventory", "validate", str(t)], "{tmp}", "folder"),
    special("folder-as-plan", lambda t: ["show", str(t)], "{tmp}", "folder"),
    special("folder-as-from-file", lambda t: ["inventory", "detect", "--from-file", str(t)], "{tmp}", "folder"),
]


@pytest.mark.parametrize("c", ids(SPECIAL_CASES))
def test_special_files_are_refused_at_once(c: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    check_case(c, tmp_path, request, cpu_bound=SPECIAL_FILE_CPU_SECONDS)


# ============================================================================= 9. plans

PLAN_CASES = [
    plan_case("saved-plan", None, code=0),
    plan_case("saved-plan-as-json", None, name="plan.json", code=0),
    plan_case("schema_version-0", set_key("schema_version", value=0), "schema_version", "0"),
    plan_case("schema_version-99", set_key("schema_version", value=99), "schema_version", "99"),
    plan_case("schema_version-99-json", set_key("schema_version", value=99), "schema_version", "99", name="plan.json"),
    plan_case("schema_version-string", set_key("schema_version", value="1"), "schema_version"),
    plan_case("no-schema_version", set_key("schema_version", value=DROP), "schema_version"),
    plan_case("request-users-a-string", set_key("request", "users", value="many"), "request.users"),
    case("request-users-NaN", lambda tmp: _plan_with_text(tmp, "users: 1\n", "users: .nan\n"),
         "{tmp}/plan.yaml", "request.users"),
    plan_case("json-5000-digits", None, "{tmp}/plan.json", name="plan.json",
              text='{"schema_version": ' + "1" * 5000 + "}"),
    plan_case("yaml-5000-digits", None, "schema_version", text="schema_version: " + "1" * 5000 + "\n"),
    plan_case("mode-5", set_key("mode", value=5), "mode"),
    plan_case("mode-train-on-serve-plan", set_key("mode", value="train"), "{tmp}/plan.yaml"),
    plan_case("unknown-top-level-key", set_key("colour", value="red"), "colour"),
    plan_case("a-list", None, "schema_version", text="- 1\n- 2\n"),
    plan_case("empty", None, "empty", text=""),
    plan_case("yaml-alias-bomb", None, "aliases", heavy=True, text="schema_version: 1\n" + "\n".join(
        [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" if i else "a0: &a0 [1,2,3,4,5,6,7,8,9,0]"
         for i in range(8)])),
    plan_case("json-NaN-everywhere", None, "{tmp}/plan.json", name="plan.json",
              text='{"schema_version": %d, "mode": "serve", "request": NaN}' % SCHEMA_VERSION),
    case("plan-missing", fixed("show", "{tmp}/none.yaml"), "{tmp}/none.yaml"),
]


def _plan_with_text(tmp: Path, old: str, new: str) -> list[str]:
    text = saved_plan()[0]
    assert old in text
    path = tmp / "plan.yaml"
    path.write_text(text.replace(old, new, 1))
    return ["show", str(path)]


@pytest.mark.parametrize("c", ids(PLAN_CASES))
def test_plans(c: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    check_case(c, tmp_path, request)


def test_plan_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "plan.yaml"
    saved = run_in_process([*PLAN_ARGS, "-o", str(out)])
    assert saved.code == 0, describe(saved)
    shown = run_in_process(["show", str(out), "--format", "json"])
    assert shown.code == 0, describe(shown)
    direct = run_in_process([*PLAN_ARGS, "--format", "json"])
    assert direct.code == 0, describe(direct)
    assert shown.stdout == direct.stdout
    yaml_text, json_text = saved_plan()  # one run with both -o and --format json
    assert json.loads(json_text) == yaml.safe_load(yaml_text)


# ============================================================================= 10. writing files

DETECT_ARGS = ("inventory", "detect", "--from-file", SMI_CSV, "--node-name", "here")


def _no_temp_files(folder: Path) -> None:
    assert not [p.name for p in folder.rglob(".*.tmp")], "a temporary file was left behind"


def write_args(command: str, target: Path | str) -> list[str]:
    """A command that writes `target` with -o: the cheap detector, or a real plan."""
    return [*DETECT_ARGS, "-o", str(target)] if command == "detect" else [*DEPLOY, "-o", str(target)]


WRITERS = ["detect", "deploy"]


def _write_onto_fifo(tmp: Path, command: str) -> tuple[str, Outcome]:
    fifo = _fifo(tmp, "out.yaml")
    return fifo, run_isolated(write_args(command, fifo))


@pytest.mark.parametrize("command", WRITERS)
@background_job(_write_onto_fifo)
def test_output_onto_a_fifo_is_refused(tmp_path: Path, command: str, request: pytest.FixtureRequest) -> None:
    fifo, outcome = take_job(request, tmp_path, command=command)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    _no_temp_files(Path(fifo).parent)
    assert_no_traceback(outcome)
    assert outcome.code == 2, describe(outcome)
    assert_error_line(outcome, fifo, "FIFO", tmp=Path(fifo).parent)


def _write_through_link_to_fifo(tmp: Path) -> tuple[str, Outcome]:
    link = _link(tmp, "out.yaml", _fifo(tmp, "pipe"))
    return link, run_isolated([*DETECT_ARGS, "-o", link])


@background_job(_write_through_link_to_fifo)
def test_output_through_a_symlink_to_a_fifo_is_refused(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    link, outcome = take_job(request, tmp_path)
    assert os.path.islink(link) and stat.S_ISFIFO(os.stat(link).st_mode)
    _no_temp_files(Path(link).parent)
    assert_no_traceback(outcome)
    assert outcome.code == 2, describe(outcome)
    assert_error_line(outcome, link, tmp=Path(link).parent)


@pytest.mark.parametrize("command", WRITERS)
def test_output_into_a_missing_folder_is_refused_not_created(tmp_path: Path, command: str) -> None:
    target = tmp_path / "missing" / "deeper" / "out.yaml"
    outcome = run_in_process(write_args(command, target))
    assert not (tmp_path / "missing").exists()
    _no_temp_files(tmp_path)
    assert_no_traceback(outcome)
    assert outcome.code == 2, describe(outcome)
    assert_error_line(outcome, str(target), "does not exist", tmp=tmp_path)


@pytest.mark.parametrize("command", WRITERS)
def test_output_onto_a_folder_is_refused(tmp_path: Path, command: str) -> None:
    folder = tmp_path / "out.yaml"
    folder.mkdir()
    (folder / "keep").write_text("kept")
    outcome = run_in_process(write_args(command, folder))
    assert folder.is_dir() and [p.name for p in folder.iterdir()] == ["keep"]
    _no_temp_files(tmp_path)
    assert_no_traceback(outcome)
    assert outcome.code == 2, describe(outcome)
    assert_error_line(outcome, str(folder), "folder", tmp=tmp_path)


def test_output_through_a_symlink_writes_its_target(tmp_path: Path) -> None:
    target = tmp_path / "real" / "plan.yaml"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    outcome = run_in_process([*DEPLOY, "-o", str(link)])
    assert outcome.code == 0, describe(outcome)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert yaml.safe_load(target.read_text())["schema_version"] == SCHEMA_VERSION
    _no_temp_files(tmp_path)


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o640, 0o755])
def test_output_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "detected.yaml"
    target.write_text("old\n")
    os.chmod(target, mode)
    outcome = run_in_process([*DETECT_ARGS, "-o", str(target)])
    assert outcome.code == 0, describe(outcome)
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert "rtx-4090" in target.read_text()
    _no_temp_files(tmp_path)


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.parametrize("command", WRITERS)
def test_a_new_output_file_honours_the_umask(tmp_path: Path, command: str) -> None:
    target = tmp_path / "new.yaml"
    with umask(0o027):
        outcome = run_in_process(write_args(command, target))
    assert outcome.code == 0, describe(outcome)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    _no_temp_files(tmp_path)


@pytest.mark.parametrize("failing", ["replace", "fsync", "fchmod"])
def test_an_interrupted_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    from planner.loaders import files

    target = tmp_path / "plan.yaml"
    target.write_text("old content\n")

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, failing, interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.write_text(target, "new content\n")
    monkeypatch.undo()
    assert target.read_text() == "old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.yaml"]


def test_a_full_disk_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from planner.errors import InputError
    from planner.loaders import files

    target = tmp_path / "plan.yaml"
    target.write_text("old content\n")

    def full(*args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(InputError, match="No space left"):
        files.write_text(target, "new content\n")
    monkeypatch.undo()
    assert target.read_text() == "old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.yaml"]


SLOW_DEPLOY = ("deploy", "--inventory", str(INVENTORIES / "h100-256.yaml"), "--model", "llama-3.1-8b", "--users", "900",
               "--objective", "latency", "--time-limit", "60")


def wait_until_busy(proc: subprocess.Popen[bytes], cpu_seconds: float) -> None:
    """Until the child has spent `cpu_seconds` of CPU (start-up is about 1 s of it, so it is past
    its imports and planning), or about 2 s where /proc is missing."""
    stat_file = Path(f"/proc/{proc.pid}/stat")
    if not stat_file.exists():
        time.sleep(2.0)
        return
    tick = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + 40
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
            if (int(fields[11]) + int(fields[12])) / tick >= cpu_seconds:
                return
        time.sleep(0.05)


SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}


def _signal_during_deploy(tmp: Path, name: str) -> tuple[Path, bytes, Outcome]:
    """`plan deploy -o existing.yaml` on a slow instance, signalled ~2 s in, while it plans."""
    existing = tmp / "existing.yaml"
    existing.write_text(saved_plan()[0])
    before = existing.read_bytes()
    start = time.perf_counter()
    proc = subprocess.Popen([*CLI, *SLOW_DEPLOY, "-o", str(existing)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, cwd=ROOT)
    try:
        wait_until_busy(proc, cpu_seconds=2.0)
        running = proc.poll() is None
        proc.send_signal(SIGNALS[name])
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert running, "the deploy finished before the signal; pick a slower instance"
    outcome = Outcome(proc.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"),
                      time.perf_counter() - start)
    return existing, before, outcome


@pytest.mark.parametrize("name", list(SIGNALS))
@background_job(_signal_during_deploy)
def test_a_signal_during_deploy_loses_nothing(tmp_path: Path, name: str, request: pytest.FixtureRequest) -> None:
    existing, before, outcome = take_job(request, tmp_path, name=name)
    assert existing.read_bytes() == before
    assert [p.name for p in existing.parent.iterdir()] == ["existing.yaml"]
    assert_no_traceback(outcome)
    assert outcome.code == 130, describe(outcome)
    assert_error_line(outcome, "interrupted")


# ============================================================================= 11. standard output that cannot be written

FULL_COMMANDS = {"formats": ("formats",), "models-list": ("models", "list", "--format", "json"),
                 "schema": ("schema", "plan"), "validate": ("inventory", "validate", HOMELAB)}


def _onto_dev_full(tmp: Path, name: str) -> Outcome:
    with open("/dev/full", "w") as full:
        return run_isolated(FULL_COMMANDS[name], stdout=full)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
@pytest.mark.parametrize("name", list(FULL_COMMANDS))
@background_job(_onto_dev_full)
def test_a_full_stdout_is_one_line_not_a_traceback(tmp_path: Path, name: str, request: pytest.FixtureRequest) -> None:
    outcome = take_job(request, tmp_path, name=name)
    assert_no_traceback(outcome)
    assert outcome.code == 2, describe(outcome)
    assert_error_line(outcome, "cannot write")


PIPE_COMMANDS = {"models-list": ("models", "list"), "hardware-list": ("hardware", "list", "--format", "json"),
                 "schema": ("schema", "plan"), "formats": ("formats",)}


def _into_a_closed_pipe(tmp: Path, name: str) -> Outcome:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte
    try:
        return run_isolated(PIPE_COMMANDS[name], stdout=write_end)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("name", list(PIPE_COMMANDS))
@background_job(_into_a_closed_pipe)
def test_a_reader_that_goes_away_is_no_traceback(tmp_path: Path, name: str, request: pytest.FixtureRequest) -> None:
    outcome = take_job(request, tmp_path, name=name)
    assert_no_traceback(outcome)
    assert "BrokenPipe" not in outcome.stderr and "Errno" not in outcome.stderr, describe(outcome)
    assert outcome.code in (0, 1), describe(outcome)


def _head(tmp: Path) -> subprocess.CompletedProcess[str]:
    command = " ".join(map(shlex.quote, CLI + ["hardware", "list", "--format", "json"])) + " | head -1"
    return subprocess.run(["sh", "-c", command], check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)


@background_job(_head)
def test_head_of_a_long_listing_is_no_traceback(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    proc = take_job(request, tmp_path)
    assert proc.stdout.strip() == "["
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr and "Exception ignored" not in proc.stderr, \
        proc.stderr


# ============================================================================= 12. JSON output is strict JSON

def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} in JSON output")


JSON_COMMANDS = {
    "memory-catalog": ("memory", *M8B, "--format", "json"),
    "memory-params": ("memory", "--params", "70B", "--format", "json"),
    "memory-moe-q4": ("memory", "--model", "qwen3-30b-a3b", "--weights", "q4_k_m", "--users", "64", "--format", "json"),
    "memory-train": ("memory", *M8B, "--mode", "train", "--zero-stage", "3", "-dp", "8", "--format", "json"),
    "memory-train-deepspeed": ("memory", "--params", "2851M", "--mode", "train", "--zero-stage", "3", "-dp", "8",
                               "--estimator", "deepspeed", "--largest-layer-params", "32899072", "--format", "json"),
    "deploy-serve": (*DEPLOY, "--format", "json"),
    "deploy-min-speed": (*DEPLOY, "--min-tokens-per-s", "1000000", "--format", "json"),
    "deploy-train": ("deploy", "--mode", "train", "--inventory", HOMELAB, "--model", "llama-3.2-1b", "--format", "json"),
    "inventory-show": ("inventory", "show", str(INVENTORIES / "mixed-gpu-mac.yaml"), "--format", "json"),
    "hardware-list": ("hardware", "list", "--format", "json"),
    "models-show": ("models", "show", "deepseek-v3", "--format", "json"),
}


@pytest.mark.parametrize("args", list(JSON_COMMANDS.values()), ids=list(JSON_COMMANDS))
def test_json_output_has_no_infinity_or_nan(args: tuple[str, ...]) -> None:
    outcome = run_in_process(args)
    assert_no_traceback(outcome)
    assert outcome.code in (0, 1), describe(outcome)
    if outcome.stdout.strip():
        json.loads(outcome.stdout, parse_constant=_refuse_constant)
    else:
        assert outcome.code == 1, describe(outcome)


# ============================================================================= hypothesis

RANDOM = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def assert_contract(outcome: Outcome) -> None:
    assert_no_traceback(outcome)
    assert outcome.code in (0, 1, 2), describe(outcome)
    if outcome.code == 2:
        assert_error_line(outcome)


printable = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=40)
numbers = st.one_of(st.integers(), st.integers(-10, 10**7), st.floats(allow_nan=True, allow_infinity=True))
values = st.one_of(printable, numbers.map(str), numbers.map(repr),
                   st.sampled_from(["nan", "NaN", "inf", "-inf", "1e400", "0x10", "1_000", "", " ", "int4-g0", "q4_k_m",
                                    "fp8", "bf16", "./", "/", "..", "llama-3.1-8b", "config.json"]))
MEMORY_OPTIONS = ["--users", "--context", "--weights", "--kv-cache", "--model", "--overhead"]


@RANDOM
@given(st.lists(st.tuples(st.sampled_from(MEMORY_OPTIONS), values, st.booleans()), min_size=1, max_size=3))
def test_random_option_values(options: list[tuple[str, str, bool]]) -> None:
    args = ["memory"]
    if not any(name == "--model" for name, _, _ in options):
        args += ["--model", "llama-3.2-1b"]
    for name, value, joined in options:
        args += [f"{name}={value}"] if joined else [name, value]
    assert_contract(run_in_process(args))


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, byte in edits:
        at = where % (len(out) + 1)
        if kind == 0 and at < len(out):
            out[at] = byte
        elif kind == 1:
            out.insert(at, byte)
        elif at < len(out):
            del out[at]
    return bytes(out)


edits = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8)
INVENTORY_SEED = (VALID_INVENTORY + "        count: 2\n        reserved_gb: 1.5\n"
                  "  - name: b\n    devices:\n      - type: custom\n        name: g\n        memory_gb: 24\n"
                  "        bandwidth_gb_s: 900\n        fp16_tflops: 80\nnetwork:\n  default: ethernet-10g\n"
                  "  links:\n    - between: [a, b]\n      type: ethernet-10g\n").encode()
CONFIG_SEED = json.dumps(tiny_config(num_local_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                     layer_types=["sliding_attention", "full_attention"] * 2, sliding_window=128),
                         indent=2).encode()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_mutation_seeds_are_valid(scratch: Path) -> None:
    (scratch / "inventory.yaml").write_bytes(INVENTORY_SEED)
    (scratch / "m").mkdir(exist_ok=True)
    (scratch / "m" / "config.json").write_bytes(CONFIG_SEED)
    assert run_in_process(["inventory", "validate", str(scratch / "inventory.yaml")]).code == 0
    assert run_in_process(["memory", "--model", str(scratch / "m" / "config.json")]).code == 0


@RANDOM
@given(edits)
def test_random_inventory_mutations(scratch: Path, changes: list[tuple[int, int, int]]) -> None:
    path = scratch / "inventory.yaml"
    path.write_bytes(mutate(INVENTORY_SEED, changes))
    assert_contract(run_in_process(["inventory", "validate", str(path)]))


@RANDOM
@given(edits)
def test_random_config_mutations(scratch: Path, changes: list[tuple[int, int, int]]) -> None:
    path = scratch / "m" / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(mutate(CONFIG_SEED, changes))
    assert_contract(run_in_process(["memory", "--model", str(path)]))


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-3, 70_000), st.floats(),
              st.text(max_size=20), st.sampled_from(["full_attention", "sliding_attention", "mamba", "llama", "NaN"])),
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20,
)
CONFIG_KEYS = sorted(set(json.loads(CONFIG_SEED)) | {
    "text_config", "quantization_config", "rope_scaling", "kv_lora_rank", "head_dim", "torch_dtype", "n_shared_experts",
    "first_k_dense_replace", "mlp_only_layers", "decoder_sparse_step", "sliding_window_pattern", "max_window_layers",
    "use_sliding_window", "attention_chunk_size", "num_nextn_predict_layers", "n_layer", "top_k", "frobnicate"})


@RANDOM
@given(st.sampled_from(CONFIG_KEYS), json_values)
def test_random_config_values(scratch: Path, key: str, value: Any) -> None:
    config = json.loads(CONFIG_SEED)
    config[key] = value
    path = scratch / "m" / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(config))  # NaN and Infinity as Python's json writes them
    assert_contract(run_in_process(["memory", "--model", str(path)]))


# ============================================================================= 10. market files (plan whatif --market)

VALID_TEMPLATE = ("templates:\n  - id: box\n    name: a box\n    kind: workstation\n    devices: 1xrtx-4090\n"
                  "    price: {usd: 1599, date: \"2022-10\", source: \"a test price\"}\n")


def market_case(id: str, content: str | bytes, *expect: str, code: int = 2, heavy: bool = False) -> Case:
    """`plan whatif --market <tmp>/market.yaml`; an error must also name the file."""

    def build(tmp: Path) -> list[str]:
        path = tmp / "market.yaml"
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return ["whatif", "--model", "llama-3.1-8b", "--users", "2", "--context", "4096", "--market", str(path),
                "--time-limit", "20"]

    return case(id, build, *(("{tmp}/market.yaml", *expect) if code == 2 else ()), code=code, heavy=heavy)


MARKET_CASES = [
    market_case("valid", VALID_TEMPLATE, code=0),
    market_case("not-a-list", "templates: {id: box}\n", "templates"),
    market_case("empty-list", "templates: []\n", "templates"),
    market_case("price-nan", VALID_TEMPLATE.replace("1599", ".nan"), "price.usd"),
    market_case("price-inf", VALID_TEMPLATE.replace("1599", ".inf"), "price.usd"),
    market_case("price-negative", VALID_TEMPLATE.replace("1599", "-5"), "price.usd"),
    market_case("price-5000-digits", VALID_TEMPLATE.replace("1599", "9" * 5000), "price.usd"),
    market_case("date-month-13", VALID_TEMPLATE.replace("2022-10", "2022-13"), "price.date", "month"),
    market_case("date-in-the-future", VALID_TEMPLATE.replace("2022-10", "2999-01"), "price.date", "future"),
    market_case("unknown-device", VALID_TEMPLATE.replace("rtx-4090", "rtx-4900"), "devices", "rtx-4090"),
    market_case("unknown-key", VALID_TEMPLATE + "    colour: red\n", "colour"),
    market_case("hourly-on-a-workstation", VALID_TEMPLATE.replace(
        "    price: {usd: 1599, date: \"2022-10\", source: \"a test price\"}\n",
        "    hourly: {usd_per_hour: 1, provider: x, instance: y, date: \"2025\", source: \"a test price\"}\n"), "kind: cloud"),
    market_case("a-thousand-devices", VALID_TEMPLATE.replace("1xrtx-4090", "1000xrtx-4090"), "devices", "72"),
    market_case("duplicate-id", VALID_TEMPLATE + VALID_TEMPLATE.split("templates:\n")[1], "duplicate"),
    market_case("truncated", VALID_TEMPLATE[:-20], "market.yaml"),
    market_case("nul-byte", VALID_TEMPLATE.replace("rtx-4090", "rtx\x00-4090"), "not valid YAML"),
    market_case("not-utf8", b"templates:\n  - id: \xff\xfe\n", "market.yaml"),
    market_case("alias-bomb", billion_laughs_yaml().replace("name: x\nnodes:", "templates:"), "aliases", heavy=True),
    market_case("nested-100000-deep", "templates: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested", heavy=True),
]


@pytest.mark.parametrize("c", ids(MARKET_CASES))
def test_market_file(c: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    check_case(c, tmp_path, request)
