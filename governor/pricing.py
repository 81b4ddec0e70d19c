"""Joules into what reports need: kWh, money and carbon (flat or hourly grid intensity)."""

from __future__ import annotations

import time
from dataclasses import dataclass

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Pricing:
    price_per_kwh: float
    currency: str
    carbon_g_per_kwh: float
    carbon_hourly: tuple[float, ...] | None = None

    @classmethod
    def from_config(cls, ledger_cfg: dict) -> Pricing:
        hourly = ledger_cfg.get("carbon_hourly")
        return cls(price_per_kwh=ledger_cfg["price_per_kwh"], currency=ledger_cfg["currency"],
                   carbon_g_per_kwh=ledger_cfg["carbon_g_per_kwh"], carbon_hourly=tuple(hourly) if hourly else None)

    def intensity(self, unix_time: float | None) -> float:
        if self.carbon_hourly is None or unix_time is None:
            return self.carbon_g_per_kwh
        return self.carbon_hourly[time.localtime(unix_time).tm_hour]

    def kwh(self, joules: float) -> float:
        return joules / J_PER_KWH

    def money(self, joules: float) -> float:
        return self.kwh(joules) * self.price_per_kwh

    def carbon_kg(self, joules: float, unix_time: float | None = None) -> float:
        return self.kwh(joules) * self.intensity(unix_time) / 1000.0

    def describe(self, joules: float, unix_time: float | None = None) -> dict:
        return {"kwh": round(self.kwh(joules), 6), "money": round(self.money(joules), 6), "currency": self.currency,
                "co2e_kg": round(self.carbon_kg(joules, unix_time), 6)}
