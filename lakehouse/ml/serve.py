"""Online scoring: one payment -> its features from Redis -> the champion -> a decision, in milliseconds.

    Scorer(settings).score(payment)      in process (lakehouse.ml.score_online uses a shared one)
    lakehouse ml serve [--port P]        POST /score {payment JSON} -> decision JSON; GET /health

A payment is the charge as the payment service knows it when it asks: `customer_id`,
`payment_method_id`, `merchant_id`, `amount_usd`, `device_type`, optionally `terminal_id`, `ip_address`
(pseudonymized here with the platform's key, never stored) or `ip_pseudo`, `ip_country`, `ip_latitude`,
`ip_longitude` (the IP's geolocation) and `created_at` (ISO-8601, default now). The model is held
unwrapped (no pyfunc schema check per call) and sees exactly the raw columns the batch path gives it.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lakehouse.common.config import Settings, load_settings

log = logging.getLogger(__name__)

REQUIRED = ("customer_id", "payment_method_id", "merchant_id", "amount_usd", "device_type")


class PaymentError(ValueError):
    """A payment the scorer cannot read (a field missing or of the wrong type)."""


@dataclass(frozen=True)
class Decision:
    score: float
    decision: str
    threshold: float
    model_name: str
    model_version: str
    features_ms: float
    model_ms: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _utc(value: Any) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError as e:
        raise PaymentError(f"created_at: {value!r} is not an ISO-8601 time") from e
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def request_fields(payment: Mapping[str, Any], ip_pseudo: str | None) -> dict[str, Any]:
    """The payment's keys and request columns, checked (a PaymentError names the bad field)."""
    missing = [f for f in REQUIRED if payment.get(f) is None]
    if missing:
        raise PaymentError(f"payment lacks {', '.join(missing)}")
    try:
        out: dict[str, Any] = {
               "customer_id": int(payment["customer_id"]), "payment_method_id": int(payment["payment_method_id"]),
               "merchant_id": int(payment["merchant_id"]),
               "terminal_id": None if payment.get("terminal_id") is None else int(payment["terminal_id"]),
               "amount_usd": float(payment["amount_usd"])}
        lat, lon = payment.get("ip_latitude"), payment.get("ip_longitude")
        out.update(ip_lat=None if lat is None else float(lat), ip_lon=None if lon is None else float(lon))
    except (TypeError, ValueError) as e:
        raise PaymentError(f"payment: a numeric field is not a number ({e})") from e
    out.update(device_type=str(payment["device_type"]), ip_country=payment.get("ip_country"), ip_pseudo=ip_pseudo,
               created_at=_utc(payment.get("created_at")), has_terminal=float(out["terminal_id"] is not None))
    return out


class Scorer:
    """The champion (or another alias) with the feature store, ready to score one payment at a time."""

    def __init__(self, settings: Settings, alias: str = "champion") -> None:
        import mlflow

        from lakehouse.features.store import feature_store
        from lakehouse.ml.registry import alias_version
        from lakehouse.ml.tracking import client as mlflow_client
        from lakehouse.security.keys import load_master_key

        self.settings = settings
        client = mlflow_client(settings)
        version = alias_version(client, settings.ml.model_name, alias)
        if version is None:
            raise LookupError(f"{settings.ml.model_name} has no {alias}: run lakehouse ml train and lakehouse ml "
                              "promote")
        self.model_version = str(version.version)
        self.model = mlflow.pyfunc.load_model(
            f"models:/{settings.ml.model_name}/{self.model_version}").unwrap_python_model()
        self.store = feature_store(settings)
        from lakehouse.features.store import FEATURE_SERVICE, feast_call

        with feast_call():
            self._service = self.store.get_feature_service(FEATURE_SERVICE)    # not looked up per call
        self._pseudonym_key = load_master_key(settings, create=False).pseudonym_key

    def ip_pseudo(self, payment: Mapping[str, Any]) -> str | None:
        from lakehouse.security.classification import Kind
        from lakehouse.security.protect import pseudonym_of

        if payment.get("ip_pseudo"):
            return str(payment["ip_pseudo"])
        if payment.get("ip_address"):
            return pseudonym_of(self._pseudonym_key, Kind.IP, str(payment["ip_address"]))
        return None

    def score_many(self, payments: list[Mapping[str, Any]], at: list[dt.datetime] | None = None) -> list[Decision]:
        """Scores payments with the online features as of `at` (default: each payment's created_at)."""
        from lakehouse.features.online import online_features

        started = time.perf_counter()
        fields = [request_fields(p, self.ip_pseudo(p)) for p in payments]
        features = online_features(self.store, fields, at or [f["created_at"] for f in fields], self._service)
        fetched = time.perf_counter()
        scores = self.model.score_records([{**f, **feats} for f, feats in zip(fields, features, strict=True)])
        done = time.perf_counter()
        return [Decision(float(s), "decline" if s >= self.model.threshold else "approve", self.model.threshold,
                         self.settings.ml.model_name, self.model_version, round((fetched - started) * 1000, 3),
                         round((done - fetched) * 1000, 3)) for s in scores]

    def score(self, payment: Mapping[str, Any]) -> Decision:
        return self.score_many([payment])[0]


@functools.cache
def default_scorer() -> Scorer:
    return Scorer(load_settings())


def make_server(scorer: Scorer, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server: POST /score (a payment as JSON) -> the decision as JSON; GET /health."""
    lock = threading.Lock()     # one Feast client and one model: serialize (each call takes milliseconds)

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {"status": "ok", "model_name": scorer.settings.ml.model_name,
                                 "model_version": scorer.model_version})
            else:
                self._send(404, {"error": f"no such path {self.path}; try POST /score or GET /health"})

        def do_POST(self) -> None:
            if self.path != "/score":
                self._send(404, {"error": f"no such path {self.path}; try POST /score"})
                return
            try:
                payment = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not isinstance(payment, dict):
                    raise PaymentError("the body must be one JSON object (a payment)")
                with lock:
                    decision = scorer.score(payment)
            except (PaymentError, json.JSONDecodeError) as e:
                self._send(400, {"error": str(e)})
                return
            self._send(200, decision.as_dict())

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    try:
        return ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        raise OSError(f"ml.serve_port: cannot listen on {host}:{port} ({e.strerror}); is it taken? "
                      "choose another with --port or --set ml.serve_port=…") from e
