"""Costs derived from measured quantities and a declared price sheet (never hidden constants).

The study config's ``costs`` section holds the price sheet (dated, with its source) and the deployment
scenarios. Per run:

* ``training_cost``: training wall time x the hourly price of the device that trained it;
* ``training_energy_cost``: measured training energy x the price per kWh (not measured without energy);
* ``storage_cost_per_month``: stored bytes (the adapter only, for PEFT) x the price per GB-month;
* ``inference_cost_per_1000``: 1,000 x inference time per example x the device's hourly price;
* ``tco[<scenario>]``: training + months x (storage per month + requests per month / 1000 x inference per
  1000), the total cost of serving the scenario with this run's model;
* ``roi[<scenario>]`` (when the scenario declares ``value_per_1000_requests``): (value of the requests served
  over the horizon - TCO) / TCO, as a ratio.

Devices are matched by their recorded label ('cpu', 'cuda:<GPU name>'); price-sheet keys may use shell
wildcards ('cuda:*A100*'). A device with no price is reported as not measured, with the reason.
"""

from __future__ import annotations

import fnmatch
from typing import Mapping


def device_hour_price(sheet: Mapping, device: str | None) -> tuple[float | None, str | None]:
    """(price per device-hour, None) or (None, why not)."""
    prices = sheet.get("device_hour", {})
    if device is None:
        return None, "the run recorded no device"
    if device in prices:
        return float(prices[device]), None
    for pattern, price in prices.items():
        if fnmatch.fnmatchcase(device, pattern):
            return float(price), None
    return None, f"the price sheet has no device_hour price for {device!r}"


def run_costs(metrics: Mapping[str, float | None], devices: Mapping[str, str], costs: Mapping,
              training_devices: int = 1) -> dict:
    """name -> (value or None, unit, note) for every cost metric of one run (trained on training_devices)."""
    sheet, currency = costs["price_sheet"], costs["price_sheet"]["currency"]
    out = {}

    train_price, train_why = device_hour_price(sheet, devices.get("train_time_s"))
    train_time = metrics.get("train_time_s")
    out["training_cost"] = ((training_devices * train_time / 3600 * train_price, None) if train_price is not None and train_time is not None
                            else (None, f"not measured: {train_why or 'no training time'}"))
    energy = metrics.get("train_energy_kwh")
    out["training_energy_cost"] = ((energy * sheet["kwh"], None) if energy is not None and "kwh" in sheet
                                   else (None, "not measured: " + ("training energy was not measured" if energy is None
                                                                    else "the price sheet has no kwh price")))
    stored = metrics.get("stored_bytes")
    out["storage_cost_per_month"] = ((stored / 1e9 * sheet["storage_gb_month"], None)
                                     if stored is not None and "storage_gb_month" in sheet
                                     else (None, "not measured: no stored size or no storage_gb_month price"))
    inference_price, inference_why = device_hour_price(sheet, devices.get("inference_ms_per_example"))
    per_example_ms = metrics.get("inference_ms_per_example")
    out["inference_cost_per_1000"] = ((1000 * per_example_ms / 1000 / 3600 * inference_price, None)
                                      if inference_price is not None and per_example_ms is not None
                                      else (None, f"not measured: {inference_why or 'no inference time'}"))
    parts = [out[name][0] for name in ("training_cost", "storage_cost_per_month", "inference_cost_per_1000")]
    for scenario in costs.get("scenarios", []):
        name = f"tco[{scenario['name']}]"
        if any(part is None for part in parts):
            out[name] = (None, "not measured: a cost it adds up is not measured")
        else:
            training, storage, inference = parts
            months = scenario["months"]
            out[name] = (training + months * (storage + scenario["requests_per_month"] / 1000 * inference), None)
        if "value_per_1000_requests" in scenario:
            tco = out[name][0]
            value = scenario["months"] * scenario["requests_per_month"] / 1000 * scenario["value_per_1000_requests"]
            out[f"roi[{scenario['name']}]"] = ((value - tco) / tco, None) if tco else (
                None, "not measured: " + ("its TCO is not measured" if tco is None else "its TCO is zero"))
    units = {name: "ratio" if name.startswith("roi[") else currency for name in out}
    return {name: (value, units[name], note) for name, (value, note) in out.items()}
