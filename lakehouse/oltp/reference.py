"""Reference data: regions, countries (ISO 3166), currencies (ISO 4217 with minor units), merchant
category codes (ISO 18245), IP networks with geolocation, and daily FX rates.

`ensure_reference_data` is idempotent: rows that exist are left alone. FX rates follow a seeded
random walk around a base rate, so the same seed and dates give the same rates.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

REGIONS = {"NA": "North America", "EU": "Europe", "APAC": "Asia-Pacific", "LATAM": "Latin America",
           "MEA": "Middle East and Africa"}

# code: (name, minor unit, USD per 1 major unit at the start of the walk)
CURRENCIES = {
    "USD": ("US Dollar", 2, Decimal("1")),
    "EUR": ("Euro", 2, Decimal("1.08")),
    "GBP": ("Pound Sterling", 2, Decimal("1.27")),
    "JPY": ("Yen", 0, Decimal("0.0067")),
    "CAD": ("Canadian Dollar", 2, Decimal("0.73")),
    "AUD": ("Australian Dollar", 2, Decimal("0.66")),
    "BRL": ("Brazilian Real", 2, Decimal("0.18")),
    "MXN": ("Mexican Peso", 2, Decimal("0.055")),
    "INR": ("Indian Rupee", 2, Decimal("0.012")),
    "SGD": ("Singapore Dollar", 2, Decimal("0.74")),
    "BHD": ("Bahraini Dinar", 3, Decimal("2.65")),
}

# alpha-2: (alpha-3, name, region, currency, [(city, latitude, longitude)])
COUNTRIES = {
    "US": ("USA", "United States", "NA", "USD", [("New York", "40.71280", "-74.00600"),
                                                  ("San Francisco", "37.77490", "-122.41940")]),
    "CA": ("CAN", "Canada", "NA", "CAD", [("Toronto", "43.65320", "-79.38320")]),
    "MX": ("MEX", "Mexico", "LATAM", "MXN", [("Mexico City", "19.43260", "-99.13320")]),
    "BR": ("BRA", "Brazil", "LATAM", "BRL", [("Sao Paulo", "-23.55050", "-46.63330")]),
    "GB": ("GBR", "United Kingdom", "EU", "GBP", [("London", "51.50740", "-0.12780")]),
    "DE": ("DEU", "Germany", "EU", "EUR", [("Berlin", "52.52000", "13.40500")]),
    "FR": ("FRA", "France", "EU", "EUR", [("Paris", "48.85660", "2.35220")]),
    "NL": ("NLD", "Netherlands", "EU", "EUR", [("Amsterdam", "52.36760", "4.90410")]),
    "JP": ("JPN", "Japan", "APAC", "JPY", [("Tokyo", "35.67620", "139.65030")]),
    "AU": ("AUS", "Australia", "APAC", "AUD", [("Sydney", "-33.86880", "151.20930")]),
    "SG": ("SGP", "Singapore", "APAC", "SGD", [("Singapore", "1.35210", "103.81980")]),
    "IN": ("IND", "India", "APAC", "INR", [("Mumbai", "19.07600", "72.87770")]),
    "BH": ("BHR", "Bahrain", "MEA", "BHD", [("Manama", "26.22850", "50.58600")]),
    "NG": ("NGA", "Nigeria", "MEA", "USD", [("Lagos", "6.52440", "3.37920")]),
}

MCCS = {
    "5411": ("Grocery stores, supermarkets", "low"),
    "5812": ("Eating places, restaurants", "low"),
    "5691": ("Clothing stores", "low"),
    "5999": ("Miscellaneous retail", "medium"),
    "4121": ("Taxicabs and limousines", "medium"),
    "4814": ("Telecommunication services", "medium"),
    "5815": ("Digital goods: media", "medium"),
    "5732": ("Electronics stores", "high"),
    "5967": ("Direct marketing: inbound teleservices", "high"),
    "7995": ("Betting and gambling", "high"),
}


def ip_networks() -> list[tuple[str, str, str, str, str]]:
    """(network, country, city, latitude, longitude): one /16 per city, deterministic."""
    rows = []
    for i, (code, (_, _, _, _, cities)) in enumerate(sorted(COUNTRIES.items())):
        for j, (city, lat, lon) in enumerate(cities):
            rows.append((f"{31 + i}.{10 + j}.0.0/16", code, city, lat, lon))
    return rows


FX_EPOCH = dt.date(2020, 1, 1)


def fx_rates(start: dt.date, end: dt.date, seed: int = 0) -> list[tuple[str, dt.date, Decimal]]:
    """Daily USD-per-unit rates for every currency from `start` to `end` (inclusive).

    The walk starts at FX_EPOCH, so a day's rate depends only on the seed and the day, not on the
    range asked for (a backfill and a later top-up agree)."""
    rows = []
    for code, (_, _, base) in sorted(CURRENCIES.items()):
        rng = random.Random(f"fx:{seed}:{code}")
        rate = base
        day = FX_EPOCH
        while day <= end:
            if code != "USD":
                rate = (rate * Decimal(str(1 + rng.gauss(0, 0.004)))).quantize(Decimal("1e-10"), ROUND_HALF_EVEN)
            if day >= start:
                rows.append((code, day, rate))
            day += dt.timedelta(days=1)
    return rows


def ensure_reference_data(conn: Any, fx_from: dt.date | None = None, fx_to: dt.date | None = None,
                          seed: int = 0) -> None:
    """Inserts the reference rows that are missing (and FX rates for the given days)."""
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO ref.regions VALUES (%s, %s) ON CONFLICT DO NOTHING", sorted(REGIONS.items()))
        cur.executemany("INSERT INTO ref.currencies VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                        [(c, n, m) for c, (n, m, _) in sorted(CURRENCIES.items())])
        cur.executemany("INSERT INTO ref.countries VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        [(c, a3, n, r, cur_) for c, (a3, n, r, cur_, _) in sorted(COUNTRIES.items())])
        cur.executemany("INSERT INTO ref.merchant_categories VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                        [(m, d, r) for m, (d, r) in sorted(MCCS.items())])
        cur.executemany("INSERT INTO ref.ip_networks VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        ip_networks())
        if fx_from and fx_to:
            cur.executemany("INSERT INTO ref.fx_rates VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                            fx_rates(fx_from, fx_to, seed))
