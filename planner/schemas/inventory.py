"""Inventory files as users write them, and the cluster they resolve to.

The file schema (InventoryFile and its parts) rejects unknown keys and feeds `plan schema
inventory`. The resolved Cluster has one Device per physical device, with its capacity worked out.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from planner.limits import MAX_MEMORY_GB, MAX_PRICE_USD
from planner.schemas.hardware import HardwareSpec
from planner.schemas.link import LinkSpec

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class _File(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


MIN_MEMORY_GB = 0.001  # a megabyte: below this a figure is a typo, not a device


class MemoryOverrides(_File):
    """Memory settings that a node applies to its devices and a device may override."""

    usable_memory_fraction: float | None = Field(
        None, gt=0, le=1, description="Share of memory the planner may use (on a Mac: the GPU wired limit share)."
    )
    wired_limit_gb: float | None = Field(
        None, ge=MIN_MEMORY_GB, le=MAX_MEMORY_GB, description="macOS iogpu.wired_limit_mb expressed in GB: the GPU may wire this much."
    )
    reserved_gb: float | None = Field(None, ge=0, le=MAX_MEMORY_GB, description="Memory kept back for the OS, display or other programs, GB.")
    used_gb: float | None = Field(None, ge=0, le=MAX_MEMORY_GB, description="Memory already used by other work, GB.")
    price_usd: float | None = Field(None, gt=0, le=MAX_PRICE_USD, description="What one device (or one machine, on a node) costs, USD.")


class DeviceEntry(MemoryOverrides):
    """One kind of device in a node: a catalog id, or `custom` with its figures."""

    type: str = Field(description="A hardware catalog id (see `plan hardware list`) or `custom`.")
    count: int = Field(1, ge=1, le=4096, description="How many identical devices of this kind the node has.")
    name: str | None = Field(None, pattern=_NAME, description="Display name for a custom device.")
    memory_gb: float | None = Field(None, ge=MIN_MEMORY_GB, le=MAX_MEMORY_GB, description="Custom: memory in GB (10^9 bytes).")
    memory_gib: float | None = Field(None, ge=MIN_MEMORY_GB, le=MAX_MEMORY_GB, description="Custom: memory in GiB (2^30 bytes).")
    bandwidth_gb_s: float | None = Field(None, gt=0, le=1e6, description="Custom: memory bandwidth, GB/s.")
    fp16_tflops: float | None = Field(None, gt=0, le=1e6, description="Custom: dense FP16/BF16 TFLOPS.")
    fp32_tflops: float | None = Field(None, gt=0, le=1e6, description="Custom: dense FP32 TFLOPS (default: fp16 / 2 with tensor cores, else equal).")
    fp8_tflops: float | None = Field(None, gt=0, le=1e6, description="Custom: dense FP8 TFLOPS, if supported.")
    int8_tops: float | None = Field(None, gt=0, le=1e6, description="Custom: dense INT8 TOPS, if supported.")
    tensor_cores: bool | None = Field(None, description="Custom: has matrix units (default false).")
    unified_memory: bool | None = Field(None, description="Custom: shares memory with the CPU (a Mac, a SoC).")
    power_w: float | None = Field(None, gt=0, le=1e7, description="Custom: power draw in watts.")

    @model_validator(mode="after")
    def _check_custom(self) -> "DeviceEntry":
        custom_keys = ("memory_gb", "memory_gib", "bandwidth_gb_s", "fp16_tflops", "fp32_tflops", "fp8_tflops",
                       "int8_tops", "tensor_cores", "unified_memory", "power_w", "name")
        if self.type != "custom":
            given = [k for k in custom_keys if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} only apply to type: custom (a catalog device has its own figures)")
            return self
        if (self.memory_gb is None) == (self.memory_gib is None):
            raise ValueError("a custom device needs exactly one of memory_gb or memory_gib")
        for key in ("bandwidth_gb_s", "fp16_tflops"):
            if getattr(self, key) is None:
                raise ValueError(f"a custom device needs {key}")
        return self


_ADDRESS = r"^[A-Za-z0-9][A-Za-z0-9.\-:]*$"  # a host name, an IPv4 or an IPv6 address


class PortsEntry(_File):
    """Ports a node's launches use; an export takes the engine's usual port for any left out."""

    api: int | None = Field(None, ge=1, le=65535, description="HTTP port of the server a replica answers on.")
    rendezvous: int | None = Field(None, ge=1, le=65535, description="Port the first node of a multi-node launch listens on "
                                   "for the others (vLLM --master-port, SGLang --dist-init-addr, torchrun --master_port).")
    rpc: int | None = Field(None, ge=1, le=65535, description="llama.cpp rpc-server port on a machine that lends its devices.")


class NodeEntry(MemoryOverrides):
    """A machine (or `count` identical machines) with its devices and internal interconnect."""

    name: str = Field(pattern=_NAME, description="Node name; with count > 1 the nodes are name-1, name-2, ...")
    count: int = Field(1, ge=1, le=4096, description="How many identical machines.")
    devices: list[DeviceEntry] = Field(min_length=1, description="The devices in this machine.")
    interconnect: str | None = Field(
        None, description="How devices inside the machine talk: pcie-3/4/5, nvlink-bridge, nvlink-2..5, nvswitch, unified. "
        "Default: pcie-4, or unified for a single unified-memory device."
    )
    host_memory_gb: float | None = Field(None, ge=MIN_MEMORY_GB, le=MAX_MEMORY_GB, description="CPU RAM for offloaded states, GB.")
    host_memory_bandwidth_gb_s: float | None = Field(None, gt=0, le=2000, description="Peak bandwidth of the CPU RAM, GB/s "
                                                     "(channels x MT/s x 8 bytes); or give host_memory_channels and host_memory_mt_s.")
    host_memory_channels: int | None = Field(None, ge=1, le=24, description="64-bit memory channels populated (2 on a desktop, 8-12 on a server socket).")
    host_memory_mt_s: int | None = Field(None, ge=800, le=12800, description="Memory speed in MT/s (DDR5-5600: 5600).")
    host_cpu_cores: int | None = Field(None, ge=1, le=1024, description="Physical CPU cores (what runs layers or experts kept in host memory).")
    address: str | list[str] | None = Field(None, description="Host name or IP the other nodes and ops reach this machine at "
                                            "(a list of `count` addresses for counted machines); exports use it.")
    ports: PortsEntry | None = Field(None, description="Ports its launches use (api, rendezvous, rpc).")

    @model_validator(mode="after")
    def _check_host_memory(self) -> "NodeEntry":
        pair = (self.host_memory_channels is None, self.host_memory_mt_s is None)
        if pair[0] != pair[1]:
            raise ValueError("host_memory_channels and host_memory_mt_s go together (bandwidth = channels x MT/s x 8 bytes)")
        if self.host_memory_bandwidth_gb_s is not None and not pair[0]:
            raise ValueError("give host_memory_bandwidth_gb_s or host_memory_channels with host_memory_mt_s, not both")
        return self

    @model_validator(mode="after")
    def _check_address(self) -> "NodeEntry":
        given = [self.address] if isinstance(self.address, str) else (self.address or [])
        if isinstance(self.address, list) and len(self.address) != self.count:
            raise ValueError(f"address lists {len(self.address)} addresses for {self.count} machines; give one per machine")
        for value in given:
            if not re.match(_ADDRESS, value) or len(value) > 253:
                raise ValueError(f"address {value!r} is not a host name or an IP address")
        return self


class LinkEntry(_File):
    """A network link between two named nodes."""

    between: tuple[str, str] = Field(description="The two node names (after count expansion, e.g. studio-1).")
    type: str = Field(description="Link type id (ethernet-10g, infiniband-ndr, thunderbolt-5, ...).")
    count: int = Field(1, ge=1, le=64, description="Parallel links (bonded ports or rails).")


class NetworkEntry(_File):
    """The network between nodes: one default fabric and/or explicit links."""

    default: str | None = Field(None, description="Link type every node has to a common switch.")
    rails: int = Field(1, ge=1, le=64, description="Parallel default links per node (one NIC per GPU is common).")
    links: list[LinkEntry] = Field(default_factory=list, description="Direct links between named nodes.")


class InventoryFile(_File):
    """A cluster inventory: nodes and the network between them."""

    name: str = Field(pattern=_NAME, description="Cluster name.")
    description: str | None = Field(None, description="Free text.")
    nodes: list[NodeEntry] = Field(min_length=1, description="The machines.")
    network: str | NetworkEntry | None = Field(
        None, description="A link type for a switched network between all nodes, or a mapping with default and links."
    )


# ----------------------------------------------------------------------------- resolved cluster


class _Resolved(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Device(_Resolved):
    """One physical device with its usable capacity worked out."""

    id: str = Field(description="node/index, e.g. gpu-box/gpu1.")
    node: str = Field(description="The node it sits in.")
    index: int = Field(ge=0, description="Position within the node.")
    spec: HardwareSpec = Field(description="Catalog (or custom) figures.")
    memory_bytes: int = Field(gt=0, description="Physical memory.")
    usable_bytes: int = Field(description="Memory the planner may fill: fraction or wired limit, minus reserved and used.")
    price_usd: float | None = Field(None, description="Price per device, from the inventory or the catalog.")


class Ports(_Resolved):
    """Ports a node's launches use (None: the engine's usual one)."""

    api: int | None = None
    rendezvous: int | None = None
    rpc: int | None = None


class Node(_Resolved):
    """One machine."""

    name: str
    devices: tuple[Device, ...]
    interconnect: LinkSpec
    host_memory_bytes: int | None = None
    host_memory_bandwidth_gb_s: float | None = None
    host_cpu_cores: int | None = None
    address: str | None = None
    ports: Ports = Ports()

    def holding(self, devices: tuple[Device, ...] | list[Device], name: str | None = None) -> Node:
        """This machine (renamed `name`) holding `devices`, numbered after it in order."""
        name = name or self.name
        numbered = tuple(d.model_copy(update={"id": f"{name}/gpu{k}", "node": name, "index": k}) for k, d in enumerate(devices))
        return self.model_copy(update={"name": name, "devices": numbered})


class NetworkLink(_Resolved):
    """A resolved link between two nodes (or from a node to the shared switch, b = None)."""

    a: str
    b: str | None
    link: LinkSpec
    count: int = 1


class Cluster(_Resolved):
    """The whole inventory, resolved."""

    name: str
    nodes: tuple[Node, ...]
    links: tuple[NetworkLink, ...]
    source: str | None = None

    @property
    def devices(self) -> tuple[Device, ...]:
        return tuple(d for n in self.nodes for d in n.devices)

    def joined(self, new: list[Node] | tuple[Node, ...], link: LinkSpec, *, own_link: bool = False) -> Cluster:
        """This cluster with machines `new` on its shared network (or, with none, cabled to its
        first machine over `link`); with `own_link`, over `link` either way."""
        if not self.nodes:  # nothing left to join: the first new machine is the one the others cable to
            alone = self.model_copy(update={"nodes": (new[0],), "links": ()})
            return alone.joined(tuple(new[1:]), link, own_link=own_link) if len(new) > 1 else alone
        shared = next((x for x in self.links if x.b is None), None)
        extra = tuple(NetworkLink(a=n.name, b=self.nodes[0].name, link=link) if shared is None else
                      NetworkLink(a=n.name, b=None, link=link, count=1) if own_link else
                      NetworkLink(a=n.name, b=None, link=shared.link, count=shared.count) for n in new)
        return self.model_copy(update={"nodes": self.nodes + tuple(new), "links": self.links + extra})


DetectSource = Literal["nvidia-smi-csv", "nvidia-smi-xml", "system-profiler"]
