"""Training memory pinned to the ZeRO paper (Rajbhandari et al. SC'20), the DeepSpeed memory docs and Korthikanti et al. 2022."""

from __future__ import annotations

import pytest

from planner.estimate.activations import estimate_training_layer_activation_bytes
from planner.estimate.deepspeed import estimate_deepspeed_zero2, estimate_deepspeed_zero3
from planner.estimate.memory import estimate_training_memory
from planner.estimate.optimizer import estimate_optimizer_state_bytes
from planner.estimate.parameters import TensorCount, estimate_parameters
from planner.schemas.workload import LoRASpec, Parallelism, TrainWorkload
from planner.units import GiB
from tests.conftest import mix, reference_model, tiny_model


def _model_states(model, zero: int, dp: int, **kw) -> float:
    workload = TrainWorkload(zero_stage=zero, overhead_factor=0, runtime_reserve_bytes=0, **kw)
    device = estimate_training_memory(model, mix("bf16"), workload, Parallelism(data_parallel_size=dp)).peak
    return device.weights_bytes + device.gradients_bytes + device.optimizer_bytes


def test_zero_paper_bytes_per_parameter() -> None:
    # Rajbhandari et al. 2020: 16 psi; stage 1 4psi + 12psi/N; stage 2 2psi + 14psi/N; stage 3 16psi/N.
    model = tiny_model()
    psi = estimate_parameters(model).total_parameters
    n = 8
    assert _model_states(model, 0, n) == pytest.approx(16 * psi)
    assert _model_states(model, 1, n) == pytest.approx(4 * psi + 12 * psi / n)
    assert _model_states(model, 2, n) == pytest.approx(2 * psi + 14 * psi / n)
    assert _model_states(model, 3, n) == pytest.approx(16 * psi / n)


def test_zero_paper_7_5b_example() -> None:
    # 7.5B parameters, N_d = 64: 120 GB -> 31.4 / 16.6 / 1.9 GB (ZeRO paper Figure 1).
    psi, n = 7.5e9, 64
    assert 16 * psi / 1e9 == 120
    assert round((4 * psi + 12 * psi / n) / 1e9, 1) == 31.4
    assert round((2 * psi + 14 * psi / n) / 1e9, 1) == 16.6
    assert round((16 * psi / n) / 1e9, 1) == 1.9


def test_zero_7_5b_example_through_the_estimator() -> None:
    # A Llama-shaped model scaled so its exact count sits at 7.5B (+-0.5%); stages keep the paper's ratios.
    model = tiny_model(hidden_size=4096, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=32,
                       num_key_value_heads=32, vocab_size=32000)
    psi = estimate_parameters(model).total_parameters
    assert psi == pytest.approx(7.5e9, rel=0.05)
    for stage, expected in ((0, 120), (1, 31.4), (2, 16.6), (3, 1.9)):
        assert _model_states(model, stage, 64) / 1e9 * 7.5e9 / psi == pytest.approx(expected, abs=0.05)


def test_deepspeed_documented_estimates() -> None:
    # DeepSpeed docs "Memory Requirements": t5-3b, 2,851M parameters, 1 node x 8 GPUs, GiB per GPU.
    p, largest = 2851 * 10**6, 32_899_072  # largest layer: t5-3b's shared embedding, 32128 x 1024 ("32M")
    gib = lambda x: round(x / GiB, 2)  # noqa: E731
    assert gib(estimate_deepspeed_zero2(p, gpus_per_node=8, offload_optimizer=False).gpu_bytes) == 15.93
    assert gib(estimate_deepspeed_zero2(p, gpus_per_node=8, offload_optimizer=True).gpu_bytes) == 5.31
    assert gib(estimate_deepspeed_zero3(p, largest, gpus_per_node=8).gpu_bytes) == 6.10
    assert gib(estimate_deepspeed_zero3(p, largest, gpus_per_node=8, offload_optimizer=True).gpu_bytes) == 0.79
    assert gib(estimate_deepspeed_zero3(p, largest, gpus_per_node=8, offload_optimizer=True, offload_params=True).gpu_bytes) == 0.12
    # CPU side, same page: 127.45 GiB for ZeRO-2 with offload (the "cold" estimate from the count),
    # 1.47 GiB for ZeRO-3 without offload (zero_init, the "live" estimate with the real largest layer).
    assert gib(estimate_deepspeed_zero2(p, gpus_per_node=8, offload_optimizer=True).cpu_bytes) == 127.45
    assert gib(estimate_deepspeed_zero3(p, largest, gpus_per_node=8).cpu_bytes) == 1.47


def test_korthikanti_table_2() -> None:
    model = tiny_model(hidden_size=128, num_attention_heads=8, num_key_value_heads=8)
    s, b, h, a = 64, 2, 128, 8
    sbh = s * b * h

    def act(**kw):
        return estimate_training_layer_activation_bytes(model, sequence_length=s, micro_batch_size=b, **kw)

    assert act() == sbh * (34 + 5 * a * s / h)
    assert act(tensor_parallel_size=4) == sbh * (10 + 24 / 4 + 5 * a * s / (h * 4))
    assert act(tensor_parallel_size=4, sequence_parallel=True) == pytest.approx(sbh * (34 + 5 * a * s / h) / 4)
    assert act(tensor_parallel_size=4, sequence_parallel=True, recompute="selective") == pytest.approx(sbh * 34 / 4)
    assert act(recompute="full") == 2 * sbh


def test_first_pipeline_stage_holds_p_microbatches() -> None:
    model = tiny_model(num_hidden_layers=8)
    workload = TrainWorkload(overhead_factor=0, runtime_reserve_bytes=0)
    est = estimate_training_memory(model, mix(), workload, Parallelism(pipeline_parallel_size=4))
    per_layer = estimate_training_layer_activation_bytes(model, sequence_length=4096, micro_batch_size=1)
    assert est.devices[0].activations_bytes == 2 * per_layer * 4
    assert est.devices[2].activations_bytes == 2 * per_layer * 2


def test_optimizer_state_bytes() -> None:
    matrix = TensorCount("dense_mlp", "ffn_up", 4096 * 1024, 4096, 0)
    n = matrix.params
    assert estimate_optimizer_state_bytes(matrix, "adamw") == 8 * n
    assert estimate_optimizer_state_bytes(matrix, "adamw_8bit") == 2 * n + 2 * 4 * n / 256
    assert estimate_optimizer_state_bytes(matrix, "adafactor") == 4 * (1024 + 4096)
    assert estimate_optimizer_state_bytes(matrix, "lion") == 4 * n
    assert estimate_optimizer_state_bytes(matrix, "sgd") == 0
    tiny = TensorCount("norms", None, 100, 100, 0)
    assert estimate_optimizer_state_bytes(tiny, "adamw_8bit") == 800  # under 4,096 elements stays fp32


def test_offload_moves_states_to_host() -> None:
    model = tiny_model()
    on_gpu = estimate_training_memory(model, mix(), TrainWorkload(zero_stage=2), Parallelism(data_parallel_size=4)).peak
    off = estimate_training_memory(model, mix(), TrainWorkload(zero_stage=2, offload="optimizer"), Parallelism(data_parallel_size=4)).peak
    assert off.optimizer_bytes == 0 and off.cpu_offload_bytes == on_gpu.optimizer_bytes


def test_qlora_is_far_smaller_than_full_finetuning() -> None:
    model = reference_model("Llama-3.1-8B")
    full = estimate_training_memory(model, mix("bf16"), TrainWorkload(recompute="full", sequence_length=2048)).peak
    qlora = estimate_training_memory(model, mix("nf4"), TrainWorkload(recompute="full", sequence_length=2048, lora=LoRASpec(rank=16))).peak
    # Adapters of rank 16 on q,k,v,o,gate,up,down: 16 x (in + out) per matrix and layer.
    adapters = 32 * 16 * ((4096 + 4096) * 2 + (4096 + 1024) * 2 + (4096 + 14336) * 3)
    assert qlora.gradients_bytes == 2 * adapters
    assert qlora.optimizer_bytes == 12 * adapters
    assert full.total_bytes > 4 * qlora.total_bytes
