"""Conformance: exact money, USD amounts, regions, IP geolocation and device types (pure transforms).

    rows ─ with_money(cols, currencies) ─ with_amount_usd(fx, day_col, cols) ─ with_region(countries, …) ─►
    events ─ with_ip_geo(networks, ip_col, countries) ─►        any column ─ normalize_device_type ─►

Every reference table comes in as a DataFrame with its OLTP columns (silver's `ref_currencies`,
`ref_fx_rates`, `ref_countries`, `ref_ip_networks`); nothing here reads a table. The reference side of
each join is small and broadcast. A value that cannot be conformed (an unknown currency, no FX rate in
effect, an unknown country, an IP in no network) gives NULL, never an error: the caller decides (money
columns with NULL go to quarantine; see `with_amount_usd`).

Decimal types:

- `MONEY_TYPE` DECIMAL(23,4): `<x>_minor` is a bigint (at most 19 digits) and the exponent is 0-4
  (ref.currencies.minor_unit), so `<x>_minor / 10^exponent` has at most 19 integer digits and at most 4
  decimals: every value is held exactly, and one type serves every currency (sums across currencies
  never need a cast).
- `USD_TYPE` DECIMAL(25,2): the amount (< 10^19 major units) times a rate below `MAX_USD_PER_UNIT`
  (10^4 USD per unit; the strongest currency, KWD, is about 3.3) is below 10^23, rounded to cents.
  The product is computed as DECIMAL(23,4) × DECIMAL(14,10) = DECIMAL(38,14), which Spark does without
  precision loss (p1 + p2 + 1 = 38), so the only rounding is the final one to cents, half up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, DecimalType

MONEY_TYPE = DecimalType(23, 4)
USD_TYPE = DecimalType(25, 2)
RATE_TYPE = DecimalType(14, 10)          # ref.fx_rates.usd_per_unit is numeric(20,10); see the module docstring
MAX_EXPONENT = 4                         # ref.currencies.minor_unit BETWEEN 0 AND 4
MAX_USD_PER_UNIT = 10 ** 4               # a rate at or above this does not fit RATE_TYPE: NULL
MINOR_SUFFIX = "_minor"
USD_SUFFIX = "_usd"

DEVICE_TYPES = ("mobile", "desktop", "tablet", "pos", "unknown")

_SECONDS_PER_DAY = 86_400
_IPV4 = r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$"
_IPV4_CIDR = (r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
              r"(/(3[0-2]|[12]?[0-9]))?$")


def _major(minor_column: str) -> str:
    """`amount_minor` -> `amount`; anything not ending in `_minor` is a caller's mistake."""
    if not minor_column.endswith(MINOR_SUFFIX) or minor_column == MINOR_SUFFIX:
        raise ValueError(f"money column {minor_column!r}: expected a name like <x>{MINOR_SUFFIX}")
    return minor_column[: -len(MINOR_SUFFIX)]


def utc_date(ts: Column) -> Column:
    """The UTC calendar day of a TIMESTAMP, whatever the session time zone (`to_date` uses the session's)."""
    return F.date_from_unix_date(F.floor(F.unix_seconds(ts) / F.lit(_SECONDS_PER_DAY)).cast("int"))


def with_money(amount_columns: Sequence[str], currencies: DataFrame,
               currency_column: str = "currency_code") -> Callable[[DataFrame], DataFrame]:
    """Adds, for each `<x>_minor` of `amount_columns`, `<x>` = `<x>_minor / 10^minor_unit` as MONEY_TYPE
    (DECIMAL(23,4), exact); the `<x>_minor` columns stay.

    Needs `amount_columns` (bigint) and `currency_column`; `currencies` needs `currency_code` and
    `minor_unit` (ref.currencies). NULL when the currency is unknown (or its minor_unit is outside 0-4)
    or the amount is NULL. `JPY 1234` -> 1234.0000, `USD 1234` -> 12.3400, `BHD 1234` -> 1.2340.
    """
    majors = [_major(c) for c in amount_columns]

    def _(df: DataFrame) -> DataFrame:
        exponents = F.broadcast(currencies.select(F.col("currency_code").alias("__money_currency"),
                                                  F.col("minor_unit").cast("int").alias("__money_exponent")))
        joined = df.join(exponents, on=F.col(currency_column) == F.col("__money_currency"), how="left")
        exponent = F.col("__money_exponent")
        known = exponent.between(0, MAX_EXPONENT)
        # DECIMAL(19,0) / DECIMAL(5,0) is DECIMAL(25,6): exact for exponents up to 4, then narrowed losslessly.
        scale = F.pow(F.lit(10), exponent).cast("decimal(5,0)")
        return (joined.withColumns({major: F.when(known, (F.col(minor).cast("decimal(19,0)") / scale)
                                                  .cast(MONEY_TYPE))
                                    for minor, major in zip(amount_columns, majors, strict=True)})
                .drop("__money_currency", "__money_exponent"))
    return _


def with_amount_usd(fx: DataFrame, date_column: str, amount_columns: Sequence[str],
                    currency_column: str = "currency_code") -> Callable[[DataFrame], DataFrame]:
    """Adds, for each `<x>_minor` of `amount_columns`, `<x>_usd` (USD_TYPE, DECIMAL(25,2)) = `<x>` × the
    USD rate in effect on the UTC day of `date_column`, rounded half up to cents (ties away from zero:
    0.005 -> 0.01, -0.005 -> -0.01).

    Needs `<x>` (the DECIMAL of `with_money`: apply it first), `currency_column` and `date_column` (a
    TIMESTAMP, whose UTC date is taken, or a DATE). `fx` needs `currency_code`, `rate_date`,
    `usd_per_unit` (ref.fx_rates: one rate per currency and day, in effect from that day until the
    currency's next rate). The rate in effect on day d is the one with the latest `rate_date <= d`.

    NULL when no rate is in effect (no rate on or before the day, an unknown currency) or the amount or
    day is NULL: the caller sends such rows to quarantine, it does not guess a rate.

    An as-of join done small: the batch's distinct (currency, day) pairs (a few hundred) are matched to
    the rates' validity intervals [rate_date, next rate_date) with a broadcast range join, and the result
    is joined back on equality. Cost: one pass over the batch for its pairs and one for the join (persist
    the batch if computing it is expensive), never rows × rates.
    """
    majors = [_major(c) for c in amount_columns]

    def _(df: DataFrame) -> DataFrame:
        day_type = df.schema[date_column].dataType
        day = F.col(date_column) if isinstance(day_type, DateType) else utc_date(F.col(date_column))
        rows = df.withColumns({"__fx_currency": F.col(currency_column), "__fx_day": day})

        next_rate = Window.partitionBy("currency_code").orderBy("rate_date")
        intervals = (fx.select("currency_code", "rate_date",
                               F.col("usd_per_unit").try_cast(RATE_TYPE).alias("__fx_rate"))
                     .withColumn("__fx_until", F.lead("rate_date").over(next_rate)))
        pairs = (rows.select("__fx_currency", "__fx_day")
                 .where(F.col("__fx_currency").isNotNull() & F.col("__fx_day").isNotNull()).distinct())
        in_effect = ((F.col("__fx_currency") == F.col("currency_code")) & (F.col("__fx_day") >= F.col("rate_date"))
                     & (F.col("__fx_until").isNull() | (F.col("__fx_day") < F.col("__fx_until"))))
        rates = (pairs.join(F.broadcast(intervals), on=in_effect, how="inner")
                 .select("__fx_currency", "__fx_day", "__fx_rate"))
        joined = rows.join(F.broadcast(rates), on=["__fx_currency", "__fx_day"], how="left")
        rate = F.col("__fx_rate")
        return (joined.withColumns({f"{major}{USD_SUFFIX}": F.round(F.col(major).cast(MONEY_TYPE) * rate, 2)
                                    .cast(USD_TYPE) for major in majors})
                .select(*df.columns, *[f"{major}{USD_SUFFIX}" for major in majors]))
    return _


def with_region(countries: DataFrame, country_column: str, region_column: str) -> Callable[[DataFrame], DataFrame]:
    """Adds `region_column` (string, e.g. `EU`) = ref.countries.region_code of the ISO alpha-2 code in
    `country_column` (compared upper case, blanks trimmed: a char(2) may arrive padded).

    `countries` needs `country_code` and `region_code`. NULL for a NULL or unknown country."""
    def _(df: DataFrame) -> DataFrame:
        regions = F.broadcast(countries.select(F.col("country_code").alias("__region_country"),
                                               F.col("region_code").alias("__region_code")))
        key = F.upper(F.trim(F.col(country_column)))
        return (df.join(regions, on=key == F.upper(F.trim(F.col("__region_country"))), how="left")
                .withColumn(region_column, F.col("__region_code"))
                .drop("__region_country", "__region_code"))
    return _


def ipv4_to_long(ip: Column) -> Column:
    """A dotted-quad IPv4 address (`35.10.3.156`) as its 32-bit number (bigint); NULL for anything else
    (IPv6, a malformed string, an octet above 255)."""
    octets = F.split(ip, r"\.")
    number = sum((F.get(octets, i).cast("bigint") * F.lit(256 ** (3 - i)) for i in range(4)), F.lit(0).cast("bigint"))
    return F.when(ip.rlike(_IPV4), number)


def with_ip_geo(networks: DataFrame, ip_column: str, countries: DataFrame,
                prefix: str = "ip_") -> Callable[[DataFrame], DataFrame]:
    """Adds `<prefix>country`, `<prefix>city` and `<prefix>region` of the IPv4 address in `ip_column`
    (a string), by longest-prefix match against `networks` (ref.ip_networks: `network` CIDR text such
    as `31.10.0.0/16`, `country_code`, `city`), the region from `countries` (`country_code`,
    `region_code`). NULL when the address is in no network, is not IPv4, or is NULL.

    IPv4 only: ref.ip_networks holds only IPv4 networks (lakehouse.oltp.reference.ip_networks, one /16
    per city); IPv6 networks are ignored and IPv6 addresses get NULL. A network's host bits are masked.

    Efficient for large batches and large network tables: every network is [start, end] as numbers and
    listed under each /8 bucket it covers (one for any prefix of /8 or longer), so the join is a
    broadcast hash join on the bucket with a range check inside it; it runs on the batch's distinct
    addresses, keeps the longest matching prefix per address, and is joined back on the address.
    """
    country, city, region = f"{prefix}country", f"{prefix}city", f"{prefix}region"

    def _(df: DataFrame) -> DataFrame:
        network = F.trim(F.col("network").cast("string"))
        length = F.when(F.instr(network, "/") > 0, F.substring_index(network, "/", -1).try_cast("int")) \
            .otherwise(F.lit(32))
        size = F.pow(F.lit(2), F.lit(32) - F.col("__len")).cast("bigint")      # exact: a power of two below 2^53
        nets = (networks.where(network.rlike(_IPV4_CIDR))
                .select(ipv4_to_long(F.substring_index(network, "/", 1)).alias("__addr"), length.alias("__len"),
                        F.col("country_code").alias("__country"), F.col("city").alias("__city"))
                .withColumn("__start", F.col("__addr") - F.pmod(F.col("__addr"), size))
                .withColumn("__end", F.col("__start") + size - F.lit(1))
                .withColumn("__bucket", F.explode(F.sequence(F.shiftright("__start", 24), F.shiftright("__end", 24))))
                .drop("__addr"))
        rows = df.withColumn("__ip", ipv4_to_long(F.col(ip_column)))
        addresses = rows.select("__ip").where(F.col("__ip").isNotNull()).distinct()
        inside = ((F.shiftright(F.col("__ip"), 24) == F.col("__bucket"))
                  & F.col("__ip").between(F.col("__start"), F.col("__end")))
        longest = (addresses.join(F.broadcast(nets), on=inside, how="inner")
                   .groupBy("__ip")
                   .agg(F.max_by(F.struct("__country", "__city"), F.col("__len")).alias("__geo")))
        regions = F.broadcast(countries.select(F.col("country_code").alias("__geo_country"),
                                               F.col("region_code").alias("__geo_region")))
        geo = (longest.join(regions, on=F.col("__geo.__country") == F.col("__geo_country"), how="left")
               .select("__ip", F.col("__geo.__country").alias("__country"), F.col("__geo.__city").alias("__city"),
                       F.col("__geo_region").alias("__region")))
        return (rows.join(geo, on="__ip", how="left")
                .select(*df.columns, F.col("__country").alias(country), F.col("__city").alias(city),
                        F.col("__region").alias(region)))
    return _


# Raw device descriptions seen in the wild, in the order they are tried (the first match wins). Checked
# on the lower-cased, trimmed value; user-agent strings match on their tokens (`iphone`, `ipad`,
# `android` without `mobile`, `windows nt`, …), bare OS names and synonyms on the whole value.
_POS = r"^(pos|point[ _-]?of[ _-]?sale|terminal|pos[ _-]?terminal|card[ _-]?present|in[ _-]?store|kiosk)$"
_TABLET = r"ipad|tablet|kindle|silk/|playbook|^ipados$|android(?!.*mobile).*(safari|applewebkit)"
_MOBILE = (r"iphone|ipod|windows phone|blackberry|opera mini|mobile|^(phone|smartphone|cell|cellphone|handset|ios"
           r"|android|mobile[ _-]?(app|web))$|android")
_DESKTOP = (r"^(desktop|laptop|pc|computer|notebook|workstation|windows|macos|mac|osx|linux|chromeos)$"
            r"|windows nt|macintosh|mac os x|x11|cros ")


def normalize_device_type(raw: Column) -> Column:
    """A raw device description -> one of `mobile`, `desktop`, `tablet`, `pos`, `unknown`.

    Takes canonical values (any case), synonyms (`phone`, `smartphone`, `laptop`, `PC`, `terminal`,
    `card_present`, …), OS names (`iOS`, `Android` -> mobile; `iPadOS` -> tablet; `Windows`, `macOS`,
    `Linux`, `ChromeOS` -> desktop) and user-agent strings (iPhone / Android with `Mobile` -> mobile,
    iPad / Android without `Mobile` / Kindle -> tablet, Windows NT / Macintosh / X11 -> desktop).
    NULL, empty and anything else -> `unknown`. A built-in CASE over regexes, no UDF.
    """
    value = F.lower(F.trim(raw))
    return (F.when(value.isNull() | (value == F.lit("")), F.lit("unknown"))
            .when(value.isin(*DEVICE_TYPES), value)
            .when(value.rlike(_POS), F.lit("pos"))
            .when(value.rlike(_TABLET), F.lit("tablet"))
            .when(value.rlike(_MOBILE), F.lit("mobile"))
            .when(value.rlike(_DESKTOP), F.lit("desktop"))
            .otherwise(F.lit("unknown")))
