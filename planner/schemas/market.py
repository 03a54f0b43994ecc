"""What can be bought or rented: machine templates (an 8-GPU server, a 4-GPU workstation, a Mac
Studio configuration, a cloud instance), each with its devices and what it costs, and the cost
basis a purchase search compares them on."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from planner.schemas.hardware import Price, check_price_date
from planner.schemas.inventory import Node

TemplateKind = Literal["server", "workstation", "desktop", "cloud"]
CostBasis = Literal["purchase", "hourly", "tco"]

MAX_TEMPLATES = 500  # a market file longer than this is a mistake, not a market


class _File(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class HourlyPrice(_File):
    """What renting one machine costs per hour, when and according to whom."""

    usd_per_hour: float = Field(gt=0, le=1e5, description="On-demand price of the whole instance, USD per hour.")
    provider: str = Field(min_length=1, max_length=100, description="Cloud provider (aws, gcp, azure, lambda, runpod, ...).")
    instance: str = Field(min_length=1, max_length=100, description="The provider's name for the instance type.")
    region: str | None = Field(None, max_length=100, description="Region the price is for.")
    date: str = Field(pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$", description="When the price was seen (YYYY-MM-DD, YYYY-MM or YYYY).")
    source: str = Field(min_length=4, description="Where the price was seen.")

    _date = field_validator("date")(check_price_date)


MAX_TEMPLATE_DEVICES = 72  # the largest machine sold as one (an NVL72 rack is one NVLink domain)


class MachineTemplate(_File):
    """A machine one can buy or rent: its devices (the --gpus syntax), its links and its price."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$", max_length=100, description="Template id (e.g. hgx-h100, aws-p5.48xlarge).")
    name: str = Field(min_length=1, max_length=200, description="What it is, in words.")
    kind: TemplateKind = Field(description="server, workstation, desktop (a Mac, a DGX Spark) or cloud (rented by the hour).")
    devices: str = Field(min_length=1, max_length=400, description="Its devices in the --gpus syntax (8xh100-sxm).")
    interconnect: str | None = Field(None, max_length=64, description="Link between its devices (default: the --gpus rule).")
    network: str | None = Field(None, max_length=64, description="Link between machines of this template (default: the --nodes rule).")
    price: Price | None = Field(None, description="Purchase price of the whole machine.")
    host: Price | None = Field(None, description="Purchase price of the machine around its devices, when the devices' own "
                                                 "catalog prices are counted (a workstation's chassis, CPU, memory, power supply).")
    hourly: HourlyPrice | None = Field(None, description="Cloud rental price of the whole machine.")
    power_w: float | None = Field(None, gt=0, le=1e6, description="Power of the whole machine, W (default: its devices' rated power).")
    power_source: str | None = Field(None, min_length=4, description="Where power_w comes from.")
    max_machines: int | None = Field(None, ge=1, le=64, description="The most machines of this template that can be "
                                                                     "joined (a Thunderbolt mesh: as its ports allow).")

    @model_validator(mode="after")
    def _check_prices(self) -> MachineTemplate:
        if self.kind == "cloud" and (self.price is not None or self.host is not None):
            raise ValueError("a cloud template is rented: give hourly, not price or host")
        if self.kind != "cloud" and self.hourly is not None:
            raise ValueError(f"hourly is a cloud instance's price; this template is kind {self.kind} (use kind: cloud)")
        return self


class MarketFile(_File):
    """A user's own market: templates with their prices."""

    templates: list[MachineTemplate] = Field(min_length=1, max_length=MAX_TEMPLATES, description="Machines on offer.")


class CostInputs(_File):
    """How machines are compared: their purchase price, their hourly rent, or the total cost of
    owning (purchase plus power) or renting them over some years."""

    basis: CostBasis = Field("purchase", description="purchase (USD), hourly (USD per hour) or tco (USD over `years`).")
    years: float = Field(3.0, gt=0, le=30, description="Years of total cost of ownership.")
    usd_per_kwh: float | None = Field(None, gt=0, le=10, description="Electricity price, USD per kWh (tco).")
    utilization: float = Field(1.0, gt=0, le=1, description="Share of rated power drawn on average (tco).")
    hours_per_year: float = Field(8760.0, gt=0, le=8784, description="Hours a year the machines run (rented or powered).")


class MarketMachine(BaseModel):
    """One machine of a template that can be bought, built and priced (what an infeasible plan's
    "devices to add" are chosen from)."""

    model_config = ConfigDict(frozen=True)

    template_id: str
    name: str
    node: Node
    price_usd: float
    date: str
