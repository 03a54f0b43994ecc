"""The machines a purchase search may choose from: the built-in market (planner/catalog/market.yaml:
servers, workstations and cloud instances, each with its price and source), one desktop machine
per priced unified-memory device of the hardware catalog (every Mac configuration, the DGX
Spark), and 1-, 2- and 4-card PCIe machines of every priced PCIe card; or a user's own market
file with the same fields."""

from __future__ import annotations

import datetime
import functools
from pathlib import Path

from planner.errors import InputError
from planner.limits import MAX_INVENTORY_FILE_BYTES
from planner.loaders.catalog_files import build_catalog_entry, read_catalog_file
from planner.loaders.files import read_text
from planner.loaders.hardware import load_hardware_catalog
from planner.loaders.shorthand import build_shorthand_cluster, is_sxm_part
from planner.loaders.yamlfile import Located, parse_yaml_text
from planner.schemas.hardware import HardwareSpec, Price, price_date
from planner.schemas.market import MAX_TEMPLATE_DEVICES, MAX_TEMPLATES, MachineTemplate

PCIE_CARD_COUNTS = (1, 2, 4)  # cards per generated PCIe machine
# Macs joined over Thunderbolt 5: a full mesh of four, as the RDMA clusters measured with exo were
# cabled (Jeff Geerling's four Mac Studios, 2025-12; exo's four-node tensor-parallel benchmarks).
THUNDERBOLT_MESH_MACHINES = 4


def _check_template(template: MachineTemplate, located: Located, path: tuple) -> None:
    try:
        machine = build_shorthand_cluster(gpus=template.devices, interconnect=template.interconnect)
    except InputError as err:
        field = "interconnect" if err.field == "--interconnect" else "devices"
        raise located.error(path + (field,), err.detail, suggestion=err.suggestion) from None
    if len(machine.devices) > MAX_TEMPLATE_DEVICES:
        raise located.error(path + ("devices",), f"{len(machine.devices):,} devices in one machine; the largest sold as one "
                                                 f"holds {MAX_TEMPLATE_DEVICES}")


def _read_templates(located: Located) -> list[MachineTemplate]:
    entries = located.data.get("templates") if isinstance(located.data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise located.error(("templates",), "expected a non-empty 'templates' list")
    if len(entries) > MAX_TEMPLATES:
        raise located.error(("templates",), f"{len(entries):,} templates; the limit is {MAX_TEMPLATES:,}")
    out: list[MachineTemplate] = []
    seen: set[str] = set()
    for index in range(len(entries)):
        template = build_catalog_entry(located, MachineTemplate, ("templates", index))
        if template.id in seen:
            raise located.error(("templates", index, "id"), f"duplicate template id '{template.id}'")
        _check_template(template, located, ("templates", index))
        seen.add(template.id)
        out.append(template)
    return out


def _pcie_host(located: Located, cards: int) -> Price | None:
    """The catalog's price of a machine around `cards` PCIe cards, when it has one."""
    hosts = located.data.get("pcie_hosts") if isinstance(located.data, dict) else None
    for index, entry in enumerate(hosts or []):
        if isinstance(entry, dict) and entry.get("cards") == cards:
            return build_catalog_entry(located, Price, ("pcie_hosts", index, "price"))
    return None


PCIE_CARD_MAX_W = 600  # the most a PCIe add-in card may draw (PCIe CEM 5.0 with a 12V-2x6 connector)


def _is_pcie_card(spec: HardwareSpec) -> bool:
    """A card one plugs into a PCIe slot: not an SXM part (NVLink of 300 GB/s or more, not a PCIe or
    NVL card) and not an OAM module (beyond what a PCIe card may draw)."""
    return (spec.kind == "gpu" and not is_sxm_part(spec) and spec.pcie_generation is not None
            and spec.power_w is not None and spec.power_w <= PCIE_CARD_MAX_W)


def _generated(located: Located, taken: set[str]) -> list[MachineTemplate]:
    out = []
    for spec in load_hardware_catalog().values():
        if spec.price is None:
            continue
        if spec.unified_memory:
            if spec.id not in taken:
                # Thunderbolt 5 Macs are cabled in a mesh with RDMA, so they may shard tensors over machines.
                rdma = (spec.thunderbolt_generation or 0) >= 5
                out.append(MachineTemplate(id=spec.id, name=spec.name, kind="desktop", devices=f"1x{spec.id}",
                                           network="thunderbolt-5" if rdma else None,
                                           max_machines=THUNDERBOLT_MESH_MACHINES if rdma else None))
        elif _is_pcie_card(spec):
            for cards in PCIE_CARD_COUNTS:
                template_id = f"{cards}x-{spec.id}"
                if template_id not in taken:
                    out.append(MachineTemplate(id=template_id, name=f"{cards}x {spec.name} PCIe machine", kind="workstation",
                                               devices=f"{cards}x{spec.id}", host=_pcie_host(located, cards)))
    return out


@functools.cache
def load_market_catalog() -> tuple[MachineTemplate, ...]:
    """The built-in market, in file order, then the generated machines in hardware-catalog order."""
    located = read_catalog_file("market.yaml")
    listed = _read_templates(located)
    return tuple(listed + _generated(located, {t.id for t in listed}))


def load_market_file(path: str | Path) -> tuple[MachineTemplate, ...]:
    """A user's market file: `templates:` with the fields of the built-in market, no price dated
    after today."""
    path = Path(path)
    located = parse_yaml_text(read_text(path, limit=MAX_INVENTORY_FILE_BYTES, what="market file"), str(path))
    templates = tuple(_read_templates(located))
    today = datetime.date.today()
    for index, t in enumerate(templates):
        for name in ("price", "host", "hourly"):
            seen = getattr(t, name)
            if seen is not None and price_date(seen.date) > today:
                raise located.error(("templates", index, name, "date"), f"'{seen.date}' is in the future")
    return templates
