"""The status pages a server answers at ``/``: an index of model versions and one page per
version (``/?model=NAME&version=VERSION``), rendered on request from the same states a
scrape reads (the merged view in multi-worker mode) and the drain's ring of recent totals.

>>> from inferwatch.core.registry import Registry
>>> registry = Registry()
>>> registry.monitor("fraud", "1.4.2").record_call(0.01, 0.9)
>>> status, body, headers = StatusPages(registry).respond("")
>>> status, b"fraud" in body, headers["Content-Security-Policy"].startswith("default-src")
(200, True, True)
>>> StatusPages(registry).respond("model=fraud&version=9")[0]
404
>>> registry.close()
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import zlib
from typing import Any
from urllib.parse import parse_qs, quote

from inferwatch import faults
from inferwatch.core.ddsketch import NON_FINITE_TEXT
from inferwatch.core.registry import Registry, default_registry
from inferwatch.report.conditions import Peer, Peers
from inferwatch.report.flags import Thresholds
from inferwatch.report.live import DriftCounts, SummaryScores, from_state, summary_state
from inferwatch.report.page import CSP_HEADER, index_page, model_link, report_page

HTML = "text/html; charset=utf-8"
SNAPSHOT_FORMAT = "inferwatch.status_snapshot/1"
# What `?format=` takes (any case): the page, or its snapshot for `inferwatch report --metrics`.
FORMATS = ("html", "json")
# The most bytes a snapshot is read to (and gunzipped to): far above one of hundreds of model
# versions with their references, far below what a wrong URL (a download, an endless
# stream) or a gzip bomb would take of the memory of the machine the report runs on.
MAX_SNAPSHOT_BYTES = 512 << 20


def page_headers() -> dict[str, str]:
    """Headers of every status page: the policy, no sniffing, no caching, no referrer."""
    return {"Content-Type": HTML, "Content-Security-Policy": CSP_HEADER,
            "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer"}


class StatusPages:
    """Renders the index and model pages of `registry` (inferwatch's default when None).

    `config` is what :class:`~inferwatch.report.flags.Thresholds` takes: a generator
    Config, the path of the YAML file the rules were generated from, or None (defaults).
    Creating it starts the registry's ring of recent totals.
    """

    def __init__(self, registry: Registry | None = None, *, config: Any = None,
                 metrics_link: str | None = "metrics") -> None:
        if registry is not None and not isinstance(registry, Registry):
            # A prometheus_client CollectorRegistry (what make_asgi_app takes) would fail
            # with a bare AttributeError here, or worse, on every page.
            raise TypeError("inferwatch status page: registry must be an inferwatch Registry "
                            "(inferwatch.Registry(), or None for the default), got "
                            f"{type(registry).__name__}")
        self.registry = registry or default_registry()
        self.history = self.registry.enable_history()
        self.metrics_link = _metrics_href(metrics_link) if metrics_link else metrics_link
        if config is not None:
            from inferwatch.generate.config import Config, ConfigError, load
        if config is not None and not isinstance(config, Config):
            if not isinstance(config, (str, os.PathLike)):
                # Anything else (a parsed YAML dict) would fail on every page, not here.
                raise TypeError("inferwatch status page: config must be a generator Config "
                                "or the path of its YAML file, got "
                                f"{type(config).__name__}")
            if not os.fspath(config):
                # An unset variable: read as the current directory, it would fail as
                # "(file): cannot be read: Is a directory", naming no file or option.
                raise ConfigError("(file)", "the status page's config path is empty; give "
                                  "the YAML file the rules were generated from, or None "
                                  "for the defaults")
            config = load(config)  # fails at start-up, naming the bad key, not per page
        self._config = config
        self._scores = SummaryScores()

    def respond(self, query: str) -> tuple[int, bytes, dict[str, str]]:
        """Status, body and headers for one request with query string `query`; a fault
        while rendering is counted and answered 500, never raised."""
        try:
            return self._respond(query)
        except Exception as exc:
            faults.record("status_page", exc)
            return 500, b"status page failed; see inferwatch_internal_errors_total\n", {
                "Content-Type": "text/plain; charset=utf-8"}

    def _respond(self, query: str) -> tuple[int, bytes, dict[str, str]]:
        params = parse_qs(query)
        for name in ("model", "version"):
            # `model=a&model=b` showed a's page, silently: which one the link meant is not
            # for the page to guess.
            if len(set(params.get(name, []))) > 1:
                return _bad_query(f"{name}= is given {len(params[name])} times; give one "
                                  f"{name}")
        model = params.get("model", [None])[0]
        version = params.get("version", [None])[0]
        # `?format=JSON` (or a link that repeats it) served the HTML page with status 200,
        # which a script then failed to parse far from here; a format the page does not
        # speak is told as such.
        formats = {value.strip().lower() for value in params.get("format", [])}
        if len(formats) > 1 or not formats <= set(FORMATS):
            return 400, (f"unknown format {', '.join(sorted(params['format']))!r}: "
                         f"give one of {', '.join(FORMATS)}\n").encode("utf-8", "replace"), {
                "Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"}
        if formats == {"json"}:
            # Where the windows and the history are, not the wall clock: after it stepped
            # back, the page would read empty quantiles and drift, and history samples from
            # its future.
            states, now = self.registry.states_at(model=model, version=version)
            if model is None and version is not None \
                    and len({state.model for state in states}) > 1:
                return _ambiguous(version, states)
            if not states and (model is not None or version is not None):
                # As the page answers: a 200 with no states drew `inferwatch report` an
                # empty report of a model name with a typo in it.
                return 404, b"no such model version\n", {
                    "Content-Type": "text/plain; charset=utf-8",
                    "X-Content-Type-Options": "nosniff"}
            return 200, snapshot_json(states, model, version, generated_at=now), {
                "Content-Type": "application/json", "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff"}
        if model is None and version is not None:
            # `?version=V` alone showed the index, as if no version were asked for. A
            # version of exactly one model names that model version (so `?version=` of a
            # link pasted without its model still finds it, as the snapshot always did);
            # of several, the page says which model= to add; of none, a 404 as for a model.
            states, now = self.registry.states_at(version=version)
            if len({state.model for state in states}) > 1:
                return _ambiguous(version, states)
            if states:
                page = report_page(self._report(states[-1], now), index_link="?")
                return 200, _encode(page), page_headers()
            return 404, b"no such model version\n", _TEXT_HEADERS.copy()
        if model is None:
            # The index shows calls per second, error ratio and the conditions holding:
            # read for those only, not a whole page's copy of every version.
            rows, now = self.registry.states_at(read=summary_state)
            # One model's thresholds once, not once per version of it.
            thresholds: dict[str, Thresholds] = {}
            peers: dict[str, Peers] = {}
            for state, _ in rows:
                peers.setdefault(state.model, Peers()).append(Peer.of(state))
            reports = [self._summary(state, drift, now, thresholds, peers[state.model])
                       for state, drift in sorted(rows, key=lambda row: row[0].key)]
            self._scores.keep({(r.model, r.version) for r in reports})
            body = index_page(reports, lambda r: model_link(r.model, r.version),
                              metrics_link=self.metrics_link,
                              rate_window=self._window_text(),
                              # The ring's samples come an interval apart (later when a
                              # drain round runs late): a window read from them starts up to
                              # that much before the rate window does.
                              window_slack_seconds=2 * self.history.interval_seconds)
            return 200, _encode(body), page_headers()
        if version is None:
            # A model's link without a version is its latest: the version instrumented
            # last (shadows aside), not the first one that happened to be created.
            latest = self.registry.existing_monitor(model)
            if latest is not None and latest.name == model:
                version = latest.version
        states, now = self.registry.states_at(model=model, version=version)
        if states:
            # In multi-worker mode a version this process never instrumented: the newest
            # created of those merged.
            page = report_page(self._report(states[-1], now), index_link="?")
            return 200, _encode(page), page_headers()
        return 404, b"no such model version\n", _TEXT_HEADERS.copy()

    def _report(self, state, now: float):
        # Every version of the model, for the conditions that count them (versions serving):
        # a few numbers each, read under each monitor's lock, not a copy of each.
        peers, _ = self.registry.states_at(model=state.model,
                                           read=lambda each, _at: Peer.of(each))
        if state.key not in {peer.key for peer in peers}:
            peers.append(Peer.of(state))
        return from_state(state, self.history, now, peers=peers,
                          thresholds=Thresholds.for_model(state.model, self._config))

    def _summary(self, state, drift: DriftCounts | None, now: float,
                 thresholds: dict[str, Thresholds], peers: list[Peer]):
        found = thresholds.get(state.model)
        if found is None:
            found = thresholds[state.model] = Thresholds.for_model(state.model, self._config)
        return from_state(state, self.history, now, summary=True, drift=drift,
                          scores=self._scores, thresholds=found, peers=peers)

    def _window_text(self) -> str:
        """The config's windows.rate, which the index's calls per second are over (a
        ``models:`` entry cannot change it)."""
        from inferwatch.generate.config import DEFAULT

        return (self._config if self._config is not None else DEFAULT).windows.rate


_TEXT_HEADERS = {"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"}


def _bad_query(problem: str) -> tuple[int, bytes, dict[str, str]]:
    return 400, f"{problem}\n".encode("utf-8", "replace"), _TEXT_HEADERS.copy()


def _ambiguous(version: str | None, states: list) -> tuple[int, bytes, dict[str, str]]:
    models = sorted({state.model for state in states})
    shown = ", ".join(repr(m) for m in models[:10]) + (", ..." if len(models) > 10 else "")
    return _bad_query(f"version {version!r} is a version of {len(models)} models ({shown}); "
                      "give model= as well")


def snapshot_json(states: list, model: str | None = None, version: str | None = None, *,
                  generated_at: float | None = None) -> bytes:
    """The states a page is drawn from, as JSON (``?format=json``): what
    ``inferwatch report --metrics URL`` draws the same report from, elsewhere.
    `generated_at` (default now) is the time their windows are read at there."""
    chosen = [s.to_dict() for s in states
              if (model is None or s.model == model) and (version is None or s.version == version)]
    if generated_at is None:
        generated_at = time.time()
    # Strict JSON: a sum overflowed by huge predictions came out as `Infinity`, which
    # JavaScript's, Go's and most other parsers refuse; float() reads the strings back.
    return json.dumps(_strict_json({"format": SNAPSHOT_FORMAT, "generated_at": generated_at,
                                    "states": chosen}), allow_nan=False).encode()


def read_snapshot(data: bytes) -> tuple[float, list]:
    """(generated_at, ModelStates) from :func:`snapshot_json`'s bytes; ValueError if not one."""
    from inferwatch.core.state import ModelState

    if len(data) > MAX_SNAPSHOT_BYTES:
        raise ValueError(_too_large())
    if data[:2] == b"\x1f\x8b":
        # A proxy in front may gzip the answer whatever the request accepted.
        try:
            unpacker = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
            unpacked = unpacker.decompress(data, MAX_SNAPSHOT_BYTES + 1)
        except zlib.error as exc:
            raise ValueError(f"not a status snapshot (broken gzip: {exc})") from None
        if len(unpacked) > MAX_SNAPSHOT_BYTES:
            raise ValueError(_too_large("once unpacked"))
        if not unpacker.eof:
            raise ValueError("not a status snapshot (broken gzip: the stream ends early)")
        data = unpacked
    try:
        document = json.loads(data)
    except RecursionError:
        # Arrays nested thousands deep: no snapshot is, and the parser gives up on them.
        raise ValueError("not a status snapshot (JSON nested too deep)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        if _looks_like_metrics(data):
            raise ValueError("not a status snapshot: the URL answers Prometheus metrics; "
                             "give the status page's address (the server's root, "
                             "http://host:port/, not /metrics)") from None
        raise ValueError(f"not a status snapshot (not JSON: {exc})") from None
    if not isinstance(document, dict) or document.get("format") != SNAPSHOT_FORMAT:
        raise ValueError("not a status snapshot (expected "
                         f"format {SNAPSHOT_FORMAT!r}; is the URL a status page?)")
    try:
        generated_at = float(document["generated_at"])
        states = [ModelState.from_dict(s) for s in document["states"]]
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, IndexError,
            RecursionError) as exc:
        # OverflowError: a JSON integer of hundreds of digits, which float() refuses.
        raise ValueError(f"malformed status snapshot: {exc!r}") from None
    # The time every window and the page's stamp are read at: NaN, infinity or a year
    # past 9999 would fail far from here, with no word about the snapshot.
    if not _MIN_TIME <= generated_at <= _MAX_TIME:
        raise ValueError("malformed status snapshot: generated_at is not a time "
                         f"(got {generated_at!r})")
    return generated_at, states


def _too_large(how: str = "") -> str:
    return (f"not a status snapshot: larger than {MAX_SNAPSHOT_BYTES >> 20} MiB"
            + (f" {how}" if how else "") + "; is the URL a status page?")


class DownloadTooSlow(Exception):
    """A snapshot not read whole by its deadline."""


# The most bytes one read asks for when a deadline is checked between reads.
_READ_CHUNK = 1 << 20


def read_limited(stream: Any, deadline: float | None = None) -> bytes:
    """At most :data:`MAX_SNAPSHOT_BYTES` + 1 bytes of `stream`: enough for
    :func:`read_snapshot` to refuse a larger answer without holding all of it.

    With a `deadline` (a :func:`time.monotonic` time), read piece by piece and
    :class:`DownloadTooSlow` once it passes: a host answering a byte at a time never lets a
    socket read time out, and one read of the whole would go on for as long as it trickles.

    >>> import io
    >>> read_limited(io.BytesIO(b"{}"), deadline=time.monotonic() + 60)
    b'{}'
    """
    if deadline is None:
        return stream.read(MAX_SNAPSHOT_BYTES + 1)
    # read1: what has arrived, not a wait for the whole piece.
    read = getattr(stream, "read1", stream.read)
    chunks = []
    held = 0
    while held <= MAX_SNAPSHOT_BYTES:
        if time.monotonic() >= deadline:
            raise DownloadTooSlow()
        chunk = read(min(_READ_CHUNK, MAX_SNAPSHOT_BYTES + 1 - held))
        if not chunk:
            break
        chunks.append(chunk)
        held += len(chunk)
    return b"".join(chunks)


# The Unix times a page can print (years 1970 to 9999).
_MIN_TIME, _MAX_TIME = 0.0, 253402300799.0


def _looks_like_metrics(data: bytes) -> bool:
    """Whether `data` reads as the Prometheus or OpenMetrics text format."""
    head = data[:4096].decode("utf-8", "replace").lstrip()
    return head.startswith(("# HELP ", "# TYPE ", "# EOF")) or bool(
        re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? \S+", head))


def _strict_json(value: object) -> object:
    """`value` with every float that is no finite number as Prometheus' API writes it.

    >>> _strict_json({"sum": float("inf"), "bounds": [1.0, float("-inf")]})
    {'sum': '+Inf', 'bounds': [1.0, '-Inf']}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else NON_FINITE_TEXT[
            0 if value > 0 else 1 if value < 0 else 2]
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _strict_json(value.tolist())
    return value



def _metrics_href(path: str) -> str:
    """The relative link to the metrics at `path` (a telemetry path less its leading "/"),
    encoded as the server's ``url`` encodes it, since the server matches paths decoded.

    Raw, "a#b" would link to "a" (the rest read as a fragment), "a?b" to "a" with a query,
    and "m:v2" to a URL of scheme "m".

    A path that still starts with "/" (the telemetry path "//metrics") would be read as
    absolute, or with "//" as a host name: "./" keeps it relative.

    >>> _metrics_href("métriques"), _metrics_href("a#b"), _metrics_href("m:v2")
    ('m%C3%A9triques', 'a%23b', './m:v2')
    >>> _metrics_href("/metrics")
    './/metrics'
    """
    href = quote(path, safe="/%:@!$&'()*+,;=-._~")
    if ":" in href.split("/", 1)[0] or href.startswith("/"):
        href = f"./{href}"
    return href


def _encode(text: str) -> bytes:
    # A label holding a lone surrogate must not fail the page.
    return text.encode("utf-8", "replace")
