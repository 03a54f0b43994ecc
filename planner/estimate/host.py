"""Host-memory offload (llama.cpp): layers or routed experts kept in a machine's CPU RAM.

llama.cpp runs the first `n_layer - n_gpu_layers` layers on the CPU backend, and with
`n_gpu_layers <= n_layer` the output layer too (src/llama-model.cpp load_tensors: slot il of
n_layer + 1 goes to the CPU when il < i_gpu_start or il - i_gpu_start >= act_gpu_layers);
`--n-cpu-moe N` keeps the routed experts of the first N layers in host memory, attention and
shared experts staying on the GPU (common/arg.cpp). A decode step reads what the host holds at
the host's bandwidth; a batch of at least GGML_OP_OFFLOAD_MIN_BATCH tokens (a prompt's ubatch)
instead copies those weights over PCIe and multiplies them on the GPU (ggml-cuda.cu
ggml_backend_cuda_device_offload_op, ggml-backend.cpp's scheduler).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.schemas.hardware import HardwareSpec
from planner.schemas.inventory import Node
from planner.units import GB

OS_RESERVE_BYTES = 4 * GB  # the operating system's share: Ubuntu Desktop's stated minimum memory (ubuntu.com/download/desktop)
OP_OFFLOAD_MIN_BATCH = 32  # ggml-cuda.cu: batches of at least 32 tokens run host-weighted products on the GPU
FLOPS_PER_CYCLE_PER_CORE = 32  # FP32: two 256-bit FMA units x 8 lanes x 2 (Intel optimisation manual, Haswell on; AMD Zen 2 on)
CORE_CLOCK_GHZ = 3.0  # an all-core clock of current desktop and server parts under vector load
PCIE_LANE_GB_S = {3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}  # one direction per lane after encoding (PCI-SIG: 8/16/32 GT/s x 128/130, 64 GT/s FLIT)
HOST_CLASS = "host-cpu"  # the calibration class of a CPU running llama.cpp layers or experts


@dataclass(frozen=True)
class HostMachine:
    """What a machine's host offers offloaded weights."""

    node: str
    capacity_bytes: float  # RAM less the operating system's reserve
    bandwidth_gb_s: float
    cpu_cores: int
    device: HardwareSpec  # the CPU as the speed model sees it


def check_host_figures(node: Node) -> str | None:
    """Why a machine cannot be planned with host offload, or None."""
    missing = [name for name, value in (("host_memory_gb", node.host_memory_bytes),
                                        ("host_memory_bandwidth_gb_s (or host_memory_channels and host_memory_mt_s)",
                                         node.host_memory_bandwidth_gb_s),
                                        ("host_cpu_cores", node.host_cpu_cores)) if not value]
    if missing:
        return f"{node.name} gives no {', '.join(missing)}: host offload is not planned without them"
    if node.host_memory_bytes <= OS_RESERVE_BYTES:
        return f"{node.name}'s {node.host_memory_bytes / GB:,.0f} GB of host memory leave nothing beside the system's 4 GB"
    return None


def build_host_machine(node: Node) -> HostMachine | None:
    """The host of `node`, or None when its figures are missing."""
    if check_host_figures(node) is not None:
        return None
    tflops = node.host_cpu_cores * FLOPS_PER_CYCLE_PER_CORE * CORE_CLOCK_GHZ / 1000
    device = HardwareSpec(
        id="host-cpu", name=f"{node.name} CPU ({node.host_cpu_cores} cores)", vendor="other", kind="gpu",
        memory_gib=node.host_memory_bytes / 2**30, memory_bandwidth_gb_s=node.host_memory_bandwidth_gb_s,
        fp32_tflops=tflops, fp16_tflops=tflops, tensor_cores=False, speed_class=HOST_CLASS,
        source="the inventory's host_memory_* and host_cpu_cores figures",
    )
    return HostMachine(node.name, float(node.host_memory_bytes - OS_RESERVE_BYTES), node.host_memory_bandwidth_gb_s,
                       node.host_cpu_cores, device)


def estimate_pcie_gb_s(device: HardwareSpec) -> float:
    """One direction of a device's host link, GB/s; PCIe 4.0 x16 where the catalog does not say."""
    return PCIE_LANE_GB_S[device.pcie_generation or 4] * (device.pcie_lanes or 16)
