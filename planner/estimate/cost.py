"""What one machine of a template costs on a cost basis: its purchase price, its hourly rent, or
its total cost over some years (purchase plus electricity, or rent for every hour it runs)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from planner.schemas.hardware import HardwareSpec
from planner.schemas.market import CostInputs, MachineTemplate

KW_PER_W = 1e-3


@dataclass(frozen=True)
class MachineCost:
    """One machine's cost on the basis asked for, or why it has none."""

    usd: float | None  # purchase and tco: USD; hourly: USD per hour
    why_not: str | None  # when usd is None
    parts: tuple[str, ...]  # how it was made up, in words
    dates: tuple[str, ...]  # dates of the prices used


def estimate_purchase_usd(template: MachineTemplate, devices: list[HardwareSpec]) -> tuple[float | None, tuple[str, ...], tuple[str, ...]]:
    """The machine's purchase price: its own, else its devices' catalog prices plus its host's."""
    if template.price is not None:
        return template.price.usd, (f"{template.price.usd:,.0f} USD for the machine ({template.price.date})",), (template.price.date,)
    if any(d.price is None for d in devices) or not devices:
        return None, (), ()
    total = sum(d.price.usd for d in devices)  # type: ignore[union-attr]
    parts = [f"{len(devices)} device{'s' if len(devices) > 1 else ''} {total:,.0f} USD"]
    dates = [d.price.date for d in devices]  # type: ignore[union-attr]
    if template.host is not None:
        total += template.host.usd
        parts.append(f"host {template.host.usd:,.0f} USD")
        dates.append(template.host.date)
    elif template.kind != "desktop":
        parts.append("host not priced")
    return total, tuple(parts), tuple(sorted(set(dates)))


def estimate_power_w(template: MachineTemplate, devices: list[HardwareSpec]) -> float | None:
    """The machine's power: its own figure, else its devices' rated power (a Mac's is the whole machine's)."""
    if template.power_w is not None:
        return template.power_w
    if any(d.power_w is None for d in devices) or not devices:
        return None
    return sum(d.power_w for d in devices)  # type: ignore[misc]


def estimate_machine_cost(template: MachineTemplate, devices: list[HardwareSpec], inputs: CostInputs) -> MachineCost:
    """One machine's cost on `inputs.basis`."""
    if inputs.basis == "hourly":
        if template.hourly is None:
            return MachineCost(None, "not rented by the hour", (), ())
        h = template.hourly
        return MachineCost(h.usd_per_hour, None, (f"{h.usd_per_hour:,.2f} USD/h on-demand ({h.provider} {h.instance})",), (h.date,))
    hours = inputs.hours_per_year * inputs.years
    if template.hourly is not None:
        if inputs.basis == "purchase":
            return MachineCost(None, "rented, not bought", (), ())
        h = template.hourly
        return MachineCost(h.usd_per_hour * hours, None,
                           (f"{h.usd_per_hour:,.2f} USD/h x {hours:,.0f} h",), (h.date,))
    purchase, parts, dates = estimate_purchase_usd(template, devices)
    if purchase is None:
        return MachineCost(None, "no purchase price for " + ", ".join(sorted({d.id for d in devices if d.price is None})), (), ())
    if inputs.basis == "purchase":
        return MachineCost(purchase, None, parts, dates)
    if inputs.usd_per_kwh is None:
        return MachineCost(None, "total cost of ownership needs --usd-per-kwh", (), ())
    power_w = estimate_power_w(template, devices)
    if power_w is None:
        return MachineCost(None, "no rated power for its devices", (), ())
    energy_kwh = power_w * KW_PER_W * inputs.utilization * hours
    power_usd = energy_kwh * inputs.usd_per_kwh
    return MachineCost(purchase + power_usd, None, parts + (
        f"power {power_w:,.0f} W x {inputs.utilization:g} x {hours:,.0f} h x {inputs.usd_per_kwh:g} USD/kWh = {power_usd:,.0f} USD",), dates)


def estimate_price_age_months(date: str, today: datetime.date) -> int:
    """Months from a price's date (YYYY, YYYY-MM or YYYY-MM-DD; a bare year counts from January) to `today`."""
    parts = [int(x) for x in date.split("-")[:2]]
    year, month = parts[0], parts[1] if len(parts) > 1 else 1
    return (today.year - year) * 12 + today.month - month
