"""The demo model service: a real classifier, instrumented, behind a small JSON API.

At start it trains a logistic regression on scikit-learn's bundled breast cancer dataset
(no download), plus a synthetic categorical ``channel`` (how the request arrived), profiles
the training data and the predicted probabilities as the drift reference, and serves:

- ``POST /predict`` ``{"request_id": "r-1", "instances": [{"mean radius": 14.2, ...}]}``
- ``POST /outcome`` ``{"request_id": "r-1", "label": "malignant"}``: delayed ground truth
- ``POST /faults`` ``{"error_ratio": 0.3, "slow_ratio": 0.1, "slow_seconds": 0.6}``: what the
  scenario injects (a flaky feature store), all three at once: a key left out is 0, an
  unknown one a 400; demo only, never expose it
- ``GET /healthz``

and ``/metrics`` on its own port through :func:`inferwatch.serve`.

    python -m inferwatch.demo.model --listen 127.0.0.1:8080 --metrics-listen 127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

MODEL_NAME = "breast-cancer"
MODEL_VERSION = "1.0.0"
# The shadow model: retrained on the training data plus the shifted inputs of the new client.
CHALLENGER_VERSION = "1.1.0-rc1"
CHANNELS = ("web", "app", "branch")
CHANNEL_SHARES = (0.6, 0.3, 0.1)
MAX_BODY_BYTES = 1 << 20
# Seconds a client may take to send its request: a connection that stalls mid-body held a
# handler thread forever.
REQUEST_TIMEOUT_SECONDS = 30.0


@dataclass
class Dataset:
    """The bundled dataset as named numeric columns, a channel per row, and string labels."""

    feature_names: list[str]
    numeric: np.ndarray  # rows x numeric features
    channel: np.ndarray  # one of CHANNELS per row
    labels: np.ndarray  # "malignant" / "benign"

    def instances(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """Rows as the JSON objects the API takes."""
        out = []
        for i in rows:
            item = dict(zip(self.feature_names, self.numeric[i].tolist()))
            item["channel"] = str(self.channel[i])
            out.append(item)
        return out


def load_dataset(seed: int = 0) -> Dataset:
    """scikit-learn's breast cancer data (569 rows, 30 features) plus a random channel.

    >>> data = load_dataset()
    >>> data.numeric.shape, sorted(set(data.labels.tolist()))
    ((569, 30), ['benign', 'malignant'])
    """
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    rng = np.random.default_rng(seed)
    channel = rng.choice(np.array(CHANNELS), size=len(bunch.target), p=CHANNEL_SHARES)
    return Dataset([str(n) for n in bunch.feature_names], np.asarray(bunch.data, dtype=float),
                   channel, np.asarray(bunch.target_names)[bunch.target])


def encode(numeric: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """The model matrix: numeric features plus one-hot channels (unseen channels: all 0)."""
    one_hot = (np.asarray(channel)[:, None] == np.array(CHANNELS)[None, :]).astype(float)
    return np.hstack([numeric, one_hot])


def train(data: Dataset) -> Any:
    """A standardised logistic regression fitted on the whole dataset."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return model.fit(encode(data.numeric, data.channel), data.labels)


def columns(data: Dataset, numeric: np.ndarray, channel: np.ndarray) -> dict[str, Any]:
    """Named feature columns, the shape the reference profile and the checks expect."""
    cols: dict[str, Any] = {name: numeric[:, j] for j, name in enumerate(data.feature_names)}
    cols["channel"] = np.asarray(channel, dtype=object)
    return cols


def retrain_with_shifted_inputs(data: Dataset, seed: int = 0) -> Any:
    """The challenger: the same pipeline fitted on the training rows and on the same rows as
    the new client sends them (shifted features, an unseen channel), with their labels.

    It predicts what the champion predicts on the training distribution and stays right on
    the shifted one, where the champion is not: the demo's shadow story.
    """
    from inferwatch.demo.scenario import DRIFT_SIGMAS
    from inferwatch.demo.traffic import DRIFTED_FEATURES, UNSEEN_CHANNEL

    rng = np.random.default_rng(seed)
    columns_shifted = [data.feature_names.index(n) for n in DRIFTED_FEATURES]
    shifted = data.numeric.copy()
    shifted[:, columns_shifted] += DRIFT_SIGMAS * data.numeric.std(axis=0)[columns_shifted]
    channel = data.channel.copy()
    channel[rng.random(len(channel)) < 0.3] = UNSEEN_CHANNEL
    both = Dataset(data.feature_names, np.vstack([data.numeric, shifted]),
                   np.concatenate([data.channel, channel]),
                   np.concatenate([data.labels, data.labels]))
    return train(both)


def build_model(seed: int = 0, shadow: bool = True,
                **instrument_options: Any) -> tuple[Any, Dataset]:
    """Train, profile and instrument the demo model; returns (instrumented model, data).

    With `shadow`, a retrained challenger scores every call in the background."""
    import inferwatch

    data = load_dataset(seed)
    model = train(data)
    matrix = encode(data.numeric, data.channel)
    reference = inferwatch.Reference.from_data(
        columns(data, data.numeric, data.channel), predictions=model.predict_proba(matrix),
        prediction_names=[str(c) for c in model.classes_], categorical=["channel"])
    instrumented = inferwatch.instrument(
        model, name=MODEL_NAME, version=MODEL_VERSION, trained_at=time.time(),
        task="classification", reference=reference,
        metadata={"dataset": "sklearn-breast-cancer"}, **instrument_options)
    if shadow:
        inferwatch.shadow(instrumented, retrain_with_shifted_inputs(data, seed),
                          version=CHALLENGER_VERSION, sample=1.0)
    return instrumented, data


# What POST /faults takes.
FAULT_KEYS = ("error_ratio", "slow_ratio", "slow_seconds")


@dataclass
class Faults:
    """What the scenario asks the service to inject; read on every call."""

    error_ratio: float = 0.0
    slow_ratio: float = 0.0
    slow_seconds: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    # update() and draw() hold it: a request drawing while /faults applied a body saw the
    # new error_ratio with the old slow_ratio, a mix no one asked for, and the shared rng
    # was used from every handler thread at once.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def draw(self) -> tuple[bool, bool, float]:
        """(fail, slow, slow_seconds) for one call, from one consistent set of values."""
        with self._lock:
            fail = self.rng.random() < self.error_ratio
            slow = self.rng.random() < self.slow_ratio
            return fail, slow, self.slow_seconds

    def update(self, values: dict[str, Any]) -> None:
        """Set the faults to `values`, all or none; a key left out is no such fault (0).

        A body states the whole set, as each phase of the scenario posts it."""
        # A misspelt key ({"error_rate": 0.5}) was ignored, and every fault went to 0 with a
        # 200: the caller's fault silently vanished.
        unknown = sorted(str(key) for key in values if key not in FAULT_KEYS)
        if unknown:
            # Cut short: the body may hold a megabyte of keys, the message one line.
            named = ", ".join(repr(key)[:50] for key in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise ValueError(f"unknown fault{'s' if len(unknown) > 1 else ''} {named}{more}; "
                             f"the faults are {', '.join(FAULT_KEYS)}")
        # Every value is checked before any is set: a rejected request left the faults
        # half applied (error_ratio set, slow_ratio not), though the caller got a 400.
        checked = {}
        for key in FAULT_KEYS:
            value = values.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{key} must be a number, got {type(value).__name__}")
            limit = 60.0 if key == "slow_seconds" else 1.0
            # An int past the float range (10**400) raised OverflowError, and a dropped
            # connection, from float(); checked as an int it is merely out of range.
            if not 0 <= value <= limit:
                raise ValueError(f"{key} out of range 0 to {limit:g}: {repr(value)[:20]}")
            checked[key] = float(value)
        with self._lock:
            for key, value in checked.items():
                setattr(self, key, value)


class FeatureStoreTimeout(TimeoutError):
    """The simulated feature store did not answer in time."""


class InvalidInstance(ValueError):
    """A request instance misses a feature or carries a value that is not a number."""


class BodyTooLarge(ValueError):
    """A request body past MAX_BODY_BYTES."""


def _error(exc: Exception) -> dict[str, str]:
    return {"error": type(exc).__name__, "message": str(exc)}


class ModelService:
    """Prediction logic behind the HTTP handler: one `mon.request()` per call."""

    def __init__(self, model: Any, data: Dataset) -> None:
        import inferwatch

        self.model = model
        self.data = data
        self.monitor = inferwatch.monitor(MODEL_NAME)
        self.faults = Faults()

    def predict(self, request_id: str | None, instances: list[dict[str, Any]]) -> dict[str, Any]:
        names = self.data.feature_names
        with self.monitor.request(request_id=request_id) as r:
            with r.stage("preprocess"):
                numeric = np.full((len(instances), len(names)), np.nan)
                channel = np.empty(len(instances), dtype=object)
                missing = set()
                for i, item in enumerate(instances):
                    for j, name in enumerate(names):
                        if name in item:
                            numeric[i, j] = _number(item[name], name)
                        else:
                            missing.add(name)
                    channel[i] = str(item.get("channel", ""))
                features = columns(self.data, numeric, channel)
                for name in missing:
                    del features[name]
                r.features(features)
                if missing:
                    raise InvalidInstance(f"missing features: {sorted(missing)[:3]}")
            with r.stage("feature_store"):
                self._feature_store()
            proba = self.model.predict_proba(encode(numeric, channel))
            with r.stage("postprocess"):
                classes = [str(c) for c in self.model.classes_]
                malignant = proba[:, classes.index("malignant")]
                r.action("refer" if malignant.max() >= 0.5 else "routine")
        return {"request_id": request_id,
                "predictions": [classes[k] for k in proba.argmax(axis=1)],
                "probabilities": proba.round(6).tolist()}

    def _feature_store(self) -> None:
        fail, slow, slow_seconds = self.faults.draw()
        if slow:
            time.sleep(slow_seconds)
        if fail:
            raise FeatureStoreTimeout("feature store did not answer")

    def outcome(self, request_id: str, label: str) -> None:
        self.monitor.record_outcome(request_id, label)


def _number(value: Any, name: str) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInstance(f"feature {name!r} is not a number")
    try:
        number = float(value)
    except OverflowError:  # an integer literal such as 10**400: it dropped the connection
        number = math.inf
    if math.isinf(number):  # 1e400 parses as inf: no model input, and no one meant it
        raise InvalidInstance(f"feature {name!r} is past the range of a float")
    return number


def make_handler(service: ModelService) -> type[BaseHTTPRequestHandler]:
    """The request handler class bound to `service`."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "inferwatch-demo"
        protocol_version = "HTTP/1.1"
        timeout = REQUEST_TIMEOUT_SECONDS

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the demo prints
            pass

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._reply(HTTPStatus.OK, {"status": "ok"})
            else:
                self._reply(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def do_POST(self) -> None:
            try:
                body = self._body()
                if self.path == "/predict":
                    instances = body.get("instances")
                    if not isinstance(instances, list) or not instances or not all(
                            isinstance(i, dict) for i in instances):
                        raise InvalidInstance("instances must be a non-empty list of objects")
                    rid = body.get("request_id")
                    self._reply(HTTPStatus.OK, service.predict(
                        None if rid is None else str(rid), instances))
                elif self.path == "/outcome":
                    service.outcome(str(body["request_id"]), str(body["label"]))
                    self._reply(HTTPStatus.OK, {"status": "recorded"})
                elif self.path == "/faults":
                    service.faults.update(body)
                    self._reply(HTTPStatus.OK, {"status": "set"})
                else:
                    self._reply(HTTPStatus.NOT_FOUND, {"error": "not found"})
            except BodyTooLarge as exc:
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _error(exc))
            except KeyError as exc:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": "KeyError",
                                                     "message": f"missing field {exc}"})
            except (InvalidInstance, ValueError, TypeError) as exc:
                # The message says what is wrong; the class name alone left the caller to
                # guess which of the body's fields the service refused.
                self._reply(HTTPStatus.BAD_REQUEST, _error(exc))
            except FeatureStoreTimeout as exc:
                self._reply(HTTPStatus.SERVICE_UNAVAILABLE, _error(exc))

        def _body(self) -> dict[str, Any]:
            text = self.headers.get("Content-Length") or "0"
            try:
                length = int(text)
            except ValueError:
                length = -1
            if not 0 < length <= MAX_BODY_BYTES:
                # The body stays unread, so the connection cannot carry another request:
                # its bytes would be read as one (a request the client never made).
                self.close_connection = True
                if length > MAX_BODY_BYTES:
                    raise BodyTooLarge(f"the body is {length} bytes; at most "
                                       f"{MAX_BODY_BYTES} are accepted")
                raise InvalidInstance(f"missing or invalid Content-Length {text!r}: send a "
                                      "JSON object")
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except RecursionError:
                # Thousands of nested brackets: it escaped every handler and the connection
                # dropped without an answer.
                raise InvalidInstance("the body nests too deeply") from None
            except UnicodeDecodeError:
                raise InvalidInstance("the body is not UTF-8 JSON") from None
            except ValueError as exc:
                raise InvalidInstance(f"the body is not JSON ({exc})") from None
            if not isinstance(body, dict):
                raise InvalidInstance("the body must be a JSON object")
            return body

        def _reply(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def split_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT`` for every interface) as (host, port).

    >>> split_address("127.0.0.1:8080"), split_address(":8000")
    (('127.0.0.1', 8080), ('0.0.0.0', 8000))
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _seconds(text: str) -> float:
    """A finite number of seconds above 0: 0, a negative or nan was refused only after the
    training, with a traceback."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def _cannot_listen(host: str, port: int) -> str | None:
    """Why `host:port` cannot be bound (lower case, as the demo matches it), else None."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            sock.bind((host, port))
        except (OSError, UnicodeError) as exc:
            return (getattr(exc, "strerror", None) or str(exc)).lower()
    return None


def main(argv: list[str] | None = None) -> int:
    """Serve the demo model until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m inferwatch.demo.model",
                                     description="The inferwatch demo model service.")
    parser.add_argument("--listen", type=split_address, default=("127.0.0.1", 8080),
                        help="HOST:PORT of the prediction API (default 127.0.0.1:8080)")
    parser.add_argument("--metrics-listen", type=split_address, default=("127.0.0.1", 8000),
                        help="HOST:PORT of /metrics (default 127.0.0.1:8000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic channel")
    parser.add_argument("--drift-window", type=_seconds, default=300.0, metavar="SECONDS",
                        help="rolling window the drift gauges compare (default 300)")
    args = parser.parse_args(argv)

    import inferwatch

    # Before the training, which takes a while: a port in use is reported at once.
    for flag, (host, port) in (("--listen", args.listen), ("--metrics-listen",
                                                           args.metrics_listen)):
        problem = _cannot_listen(host, port)
        if problem:
            print(f"{parser.prog}: {flag}: cannot listen on {host}:{port}: {problem}",
                  file=sys.stderr)
            return 1
    model, data = build_model(args.seed, drift_window_seconds=args.drift_window)
    service = ModelService(model, data)
    # A port in use or an unknown host ended in a traceback; one line names the address
    # (and keeps "address already in use", which the demo reads to pick another port).
    try:
        metrics = inferwatch.serve(port=args.metrics_listen[1], addr=args.metrics_listen[0])
    except OSError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1
    try:
        httpd = ThreadingHTTPServer(args.listen, make_handler(service))
    except (OSError, UnicodeError) as exc:
        metrics.shutdown()
        print(f"{parser.prog}: cannot listen on {args.listen[0]}:{args.listen[1]}: "
              f"{(getattr(exc, 'strerror', None) or str(exc)).lower()}", file=sys.stderr)
        return 1
    httpd.daemon_threads = True

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"model {MODEL_NAME} {MODEL_VERSION} serving http://{args.listen[0]}:"
          f"{httpd.server_address[1]}/predict, metrics {metrics.url}", flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
        metrics.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
