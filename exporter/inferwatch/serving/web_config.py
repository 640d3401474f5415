"""TLS and basic auth from a web-config file in the Prometheus exporter-toolkit format.

The same file node_exporter takes with ``--web.config.file``::

    tls_server_config:
      cert_file: server.crt        # relative paths resolve against this file's directory
      key_file: server.key
    basic_auth_users:
      prometheus: $2y$10$...       # bcrypt hash, e.g. from `htpasswd -nBC 10 "" | tr -d ':\\n'`

Differences from exporter-toolkit, each explained where it applies: the file is read once
when the server starts (restart to reload it); `cipher_suites`, `curve_preferences` and
`http2` are accepted and ignored with a logged note; inline `cert` / `key` and `rate_limit`
are refused with a clear error; `RequestClientCert` and `RequireAnyClientCert` need a
`client_ca_file`, because OpenSSL cannot ask for a client certificate without verifying it.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "web.yml")
>>> _ = open(path, "w").write("http_server_config:\\n  headers:\\n    X-Frame-Options: deny\\n")
>>> config = load_web_config(path)
>>> config.ssl_context() is None, config.check_basic_auth(None), config.headers
(True, True, {'X-Frame-Options': 'deny'})
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import hmac
import importlib.util
import ipaddress
import logging
import os
import re
import ssl
import stat
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("inferwatch.serving.web_config")

_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Older versions are named so that the error can say what they are: OpenSSL's default
# security level refuses their handshakes, so a server allowing them only resets clients.
_LOWEST_TLS_VERSION = "TLS12"
# A web config is a few lines; a file far larger is not one (a log, a disk image).
MAX_WEB_CONFIG_BYTES = 1 << 20
# exporter-toolkit's client_auth_type values (Go's tls.ClientAuthType) and what OpenSSL can do.
_CLIENT_AUTH = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "RequireClientCert": ssl.CERT_REQUIRED,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# exporter-toolkit allows only these response headers, some with fixed values.
_ALLOWED_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "client_ca",
             "client_allowed_sans", "min_version", "max_version", "cipher_suites",
             "prefer_server_cipher_suites", "curve_preferences", "cert", "key"}
_IGNORED_TLS_KEYS = {
    "cipher_suites": "Go cipher suite names; OpenSSL's defaults for the TLS versions apply",
    "curve_preferences": "OpenSSL's default curves apply",
}
_HTTP_KEYS = {"http2", "headers"}
# A header value a response can carry: visible characters, spaces, tabs, Latin-1 text.
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\xa0-\xff]*")
_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}
# The prefixes the bcrypt package checks ($2$, the original, it refuses) and the costs it
# takes (Go's bcrypt.MinCost and MaxCost, which exporter-toolkit checks at start-up).
_BCRYPT_HASH = re.compile(r"\$2[abxy]\$([0-9][0-9])\$[./A-Za-z0-9]{53}")
_BCRYPT_COSTS = range(4, 32)
_BCRYPT_MAX_PASSWORD_BYTES = 72
# The decoy hash an unknown user is checked against takes the cost most users have, so that
# a name's existence does not show in the time, but never above this: a single user hashed at
# cost 31 made every unknown name cost days of CPU (exporter-toolkit uses a fixed cost 10).
MAX_DECOY_COST = 12
# Above this a hash is rarely meant: each check takes seconds of CPU (cost 17 is about ten
# seconds on a common core) and every doubling of it one more.
MAX_SENSIBLE_BCRYPT_COST = 16
_TIMED_COST = 6


class WebConfigError(ValueError):
    """A web-config file that cannot be used; the message names the file and the key."""


class TlsFileError(ValueError):
    """A certificate or key file that cannot be loaded; `key` is cert_file, key_file or both."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class _Encrypted(Exception):
    pass


# Enough to tell a PEM certificate or key from something else; such files are a few KiB.
_PEM_SNIFF_BYTES = 1 << 20


def load_cert_chain(context: ssl.SSLContext, cert_file: str, key_file: str) -> None:
    """Load a certificate and its key into `context`; raise TlsFileError naming the file
    at fault and the problem (OpenSSL's own errors, like "PEM lib", name neither).

    >>> try:
    ...     load_cert_chain(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), "/no/such.crt", "/no/k")
    ... except TlsFileError as exc:
    ...     print(exc)
    cert_file: cannot read /no/such.crt: No such file or directory
    """

    def refuse_passphrase() -> bytes:
        # Without a callback OpenSSL asks for the passphrase on the terminal, which blocks
        # start-up where there is one and fails with "Invalid argument" where there is not.
        raise _Encrypted

    try:
        context.load_cert_chain(cert_file, key_file, password=refuse_passphrase)
    except _Encrypted:
        raise TlsFileError("key_file", f"{key_file} is encrypted with a passphrase, which "
                           "cannot be given here; store the key unencrypted (openssl pkey "
                           "-in KEY -out KEY.plain) and protect it with file permissions"
                           ) from None
    except (OSError, ssl.SSLError) as exc:
        raise _tls_file_problem(cert_file, key_file, exc) from exc


def _tls_file_problem(cert_file: str, key_file: str, exc: Exception) -> TlsFileError:
    """What is wrong with a certificate / key pair OpenSSL refused, as far as it can be told."""
    contents: dict[str, bytes] = {}
    for key, path in (("cert_file", cert_file), ("key_file", key_file)):
        try:
            # Non-blocking: a FIFO named here must not hang start-up a second time.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as handle:
                contents[key] = handle.read(_PEM_SNIFF_BYTES) or b""
        except OSError as error:
            return TlsFileError(key, f"cannot read {path}: {error.strerror or error}")
    if b"-----BEGIN CERTIFICATE-----" not in contents["cert_file"]:
        return TlsFileError("cert_file", f"{cert_file} holds no PEM certificate "
                            "(-----BEGIN CERTIFICATE-----)")
    if not re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----", contents["key_file"]):
        return TlsFileError("key_file", f"{key_file} holds no PEM private key "
                            "(-----BEGIN PRIVATE KEY-----)")
    if "KEY_VALUES_MISMATCH" in str(exc):
        return TlsFileError("cert_file / key_file",
                            f"the key in {key_file} does not belong to the certificate in "
                            f"{cert_file}")
    return TlsFileError("cert_file / key_file", f"cannot load {cert_file} with {key_file}: {exc}")


@dataclass
class WebConfig:
    """A parsed web-config file: TLS settings, extra response headers, basic auth users.

    >>> config = WebConfig(path="inline")
    >>> config.tls_enabled, config.auth_required
    (False, False)
    """

    path: str
    cert_file: str | None = None
    key_file: str | None = None
    client_auth_type: str = "NoClientCert"
    client_ca_file: str | None = None
    client_ca: str | None = None
    client_allowed_sans: list[str] | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    prefer_server_cipher_suites: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    _secret: bytes = field(default_factory=lambda: os.urandom(32), repr=False)
    _verified: dict[tuple[str, str], bytes] = field(default_factory=dict, repr=False)
    _bcrypt_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _decoy_hash: bytes | None = field(default=None, repr=False)

    @property
    def tls_enabled(self) -> bool:
        """True when the file configures TLS."""
        return self.cert_file is not None

    @property
    def auth_required(self) -> bool:
        """True when `basic_auth_users` is not empty."""
        return bool(self.users)

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server-side SSL context for `tls_server_config`, or None when TLS is off.

        Raises WebConfigError naming the key whose file is missing or unusable.
        """
        if self.cert_file is None or self.key_file is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = _TLS_VERSIONS[self.min_version]
        context.maximum_version = _TLS_VERSIONS[self.max_version]
        if self.prefer_server_cipher_suites:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        try:
            load_cert_chain(context, self.cert_file, self.key_file)
        except TlsFileError as exc:
            raise self._error(f"tls_server_config.{exc.key}", exc.problem) from exc
        context.verify_mode = _CLIENT_AUTH[self.client_auth_type]
        if self.client_ca_file is not None or self.client_ca is not None:
            key = "client_ca_file" if self.client_ca_file is not None else "client_ca"
            try:
                context.load_verify_locations(cafile=self.client_ca_file, cadata=self.client_ca)
            except (OSError, ssl.SSLError) as exc:
                raise self._error(f"tls_server_config.{key}", f"cannot load: {exc}") from exc
        return context

    def allows_client_certificate(self, peercert: dict[str, Any] | None) -> bool:
        """Whether a verified client certificate carries one of `client_allowed_sans`.

        >>> WebConfig(path="inline", client_allowed_sans=["scraper"]).allows_client_certificate(
        ...     {"subjectAltName": (("DNS", "scraper"),)})
        True
        """
        if not self.client_allowed_sans:
            return True
        sans = (peercert or {}).get("subjectAltName", ())
        names = {_san_text(kind, value) for kind, value in sans}
        return any(allowed in names for allowed in self.client_allowed_sans)

    def check_basic_auth_cached(self, authorization_header: str | None) -> bool | None:
        """True or False when the answer needs no bcrypt; None when `check_basic_auth` must run.

        Cheap enough for an event loop; the server calls it first and runs the full check in a
        thread only on a miss.
        """
        if not self.users:
            return True
        credentials = _parse_basic(authorization_header)
        if credentials is None:
            return False
        user, password = credentials
        stored = self.users.get(user)
        if stored is None:
            return None  # still pays bcrypt (against a decoy) so unknown users take as long
        known = self._verified.get((user, stored))
        if known is not None and hmac.compare_digest(known, self._fingerprint(password)):
            return True
        return None

    def check_basic_auth(self, authorization_header: str | None) -> bool:
        """Whether an Authorization header holds valid Basic credentials (True without users).

        A password accepted once is remembered (as a keyed digest, compared in constant
        time) per (user, password hash), so later scrapes do not pay bcrypt again.

        >>> WebConfig(path="inline").check_basic_auth("Basic " + "x" * 8)
        True
        """
        cached = self.check_basic_auth_cached(authorization_header)
        if cached is not None:
            return cached
        credentials = _parse_basic(authorization_header)
        assert credentials is not None  # a None parse already returned False above
        user, password = credentials
        stored = self.users.get(user)
        import bcrypt

        # One bcrypt at a time, as exporter-toolkit does: each costs tens of milliseconds of
        # CPU, and a stream of wrong passwords must not take every core from the model.
        with self._bcrypt_lock:
            candidate = stored.encode() if stored is not None else self._decoy(bcrypt)
            try:
                # Go's bcrypt (exporter-toolkit) and htpasswd use only the first 72 bytes;
                # bcrypt >= 5 refuses longer passwords, which would lock such users out.
                matched = bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD_BYTES], candidate)
            except ValueError:  # a malformed hash
                matched = False
        if matched and stored is not None:
            self._verified[(user, stored)] = self._fingerprint(password)
            return True
        return False

    def _fingerprint(self, password: bytes) -> bytes:
        return hmac.new(self._secret, password, hashlib.sha256).digest()

    @property
    def decoy_cost(self) -> int:
        """The bcrypt cost an unknown user's password is checked at: the most common cost
        of the configured users (the lower on a tie), at most MAX_DECOY_COST.

        >>> WebConfig(path="inline", users={"a": "$2y$10$" + "a" * 53,
        ...                                 "b": "$2y$31$" + "a" * 53}).decoy_cost
        10
        """
        costs = Counter(_bcrypt_cost(h) for h in self.users.values())
        if not costs:
            return _BCRYPT_COSTS.start
        common = max(costs, key=lambda cost: (costs[cost], -cost))
        return min(common, MAX_DECOY_COST)

    def check_seconds(self) -> dict[str, float]:
        """How long one password check of each user takes on this machine, estimated from
        one timed check at a low cost (each cost step doubles the work)."""
        if not self.users:
            return {}
        import bcrypt

        probe = bcrypt.hashpw(b"probe", bcrypt.gensalt(rounds=_TIMED_COST))
        timings = []
        for _ in range(2):
            started = time.perf_counter()
            bcrypt.checkpw(b"wrong", probe)
            timings.append(time.perf_counter() - started)
        unit = min(timings)
        return {user: unit * 2.0 ** (_bcrypt_cost(hashed) - _TIMED_COST)
                for user, hashed in self.users.items()}

    def _decoy(self, bcrypt: Any) -> bytes:
        if self._decoy_hash is None:
            self._decoy_hash = bcrypt.hashpw(os.urandom(16).hex().encode(),
                                             bcrypt.gensalt(rounds=self.decoy_cost))
        return self._decoy_hash

    def _error(self, key: str, problem: str) -> WebConfigError:
        return WebConfigError(f"web config {self.path}: {key}: {problem}")


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and check a web-config file; raise WebConfigError naming the file and the key.

    >>> try:
    ...     load_web_config("/nonexistent/web.yml")
    ... except WebConfigError as exc:
    ...     print(exc)
    web config /nonexistent/web.yml: cannot read the file: No such file or directory
    """
    import yaml

    path = os.fspath(path)
    try:
        document = yaml.load(_read_regular_file(path), Loader=_strict_loader())  # a SafeLoader
    except OSError as exc:
        raise WebConfigError(f"web config {path}: cannot read the file: "
                             f"{exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise WebConfigError(f"web config {path}: not UTF-8 text (byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise WebConfigError(f"web config {path}: not valid YAML{_yaml_problem(exc)}") from exc
    config = WebConfig(path=path)
    top = _mapping(config, "top level", document)
    _reject_unknown(config, "", top, _TOP_KEYS)
    if top.get("rate_limit") is not None:
        raise config._error("rate_limit", "not supported; rate-limit scrapes in a proxy instead")
    _apply_tls(config, _mapping(config, "tls_server_config", top.get("tls_server_config")))
    _apply_http(config, _mapping(config, "http_server_config", top.get("http_server_config")))
    _apply_users(config, _mapping(config, "basic_auth_users", top.get("basic_auth_users")))
    config.ssl_context()  # loads the certificate now, so a bad one fails at startup
    for note in config.ignored:
        log.warning("event=web_config_key_ignored file=%s %s", path, note)
    return config


def _strict_loader() -> Any:
    """yaml's SafeLoader refusing a key given twice in one mapping, as exporter-toolkit's
    strict YAML does: a second `prometheus:` user would otherwise silently replace the first.
    """
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults` may be overridden key by key, as YAML allows
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # an unhashable key: SafeLoader's own error names it
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {_key_text(key)}", key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def _apply_tls(config: WebConfig, tls: dict[str, Any]) -> None:
    _reject_unknown(config, "tls_server_config.", tls, _TLS_KEYS)
    for inline in ("cert", "key"):
        if tls.get(inline) is not None:
            raise config._error(f"tls_server_config.{inline}",
                                f"inline PEM is not supported; use {inline}_file")
    base = os.path.dirname(os.path.abspath(config.path))
    for key in ("cert_file", "key_file", "client_ca_file"):
        value = _string(config, f"tls_server_config.{key}", tls.get(key))
        setattr(config, key, os.path.join(base, value) if value else None)
    config.client_ca = _string(config, "tls_server_config.client_ca", tls.get("client_ca"))
    if not tls:
        return
    if config.cert_file is None:
        raise config._error("tls_server_config.cert_file", "missing (TLS needs a certificate)")
    if config.key_file is None:
        raise config._error("tls_server_config.key_file", "missing (TLS needs a private key)")
    for key in ("min_version", "max_version"):
        value = _string(config, f"tls_server_config.{key}", tls.get(key))
        if value is not None:
            if value not in _TLS_VERSIONS:
                raise config._error(f"tls_server_config.{key}",
                                    f"{value!r} is not one of {', '.join(_TLS_VERSIONS)}")
            if _TLS_VERSIONS[value] < _TLS_VERSIONS[_LOWEST_TLS_VERSION]:
                raise config._error(f"tls_server_config.{key}",
                                    f"{value} is below TLS 1.2, which is refused; use TLS12 "
                                    "or TLS13")
            setattr(config, key, value)
    if _TLS_VERSIONS[config.min_version] > _TLS_VERSIONS[config.max_version]:
        raise config._error("tls_server_config.min_version", "is above max_version")
    auth = _string(config, "tls_server_config.client_auth_type", tls.get("client_auth_type"))
    if auth is not None:
        if auth not in _CLIENT_AUTH:
            raise config._error("tls_server_config.client_auth_type",
                                f"{auth!r} is not one of {', '.join(k for k in _CLIENT_AUTH if k)}")
        config.client_auth_type = auth or "NoClientCert"
    has_ca = config.client_ca_file is not None or config.client_ca is not None
    verifies = _CLIENT_AUTH[config.client_auth_type] != ssl.CERT_NONE
    if has_ca and not verifies:
        raise config._error("tls_server_config.client_ca_file",
                            "set without a client_auth_type that asks for client certificates")
    if verifies and not has_ca:
        raise config._error("tls_server_config.client_ca_file",
                            f"required with client_auth_type {config.client_auth_type}: "
                            "client certificates are verified against it")
    sans = tls.get("client_allowed_sans")
    if sans is not None:
        if not isinstance(sans, list) or not all(isinstance(s, str) for s in sans):
            raise config._error("tls_server_config.client_allowed_sans",
                                "must be a list of strings")
        if _CLIENT_AUTH[config.client_auth_type] != ssl.CERT_REQUIRED:
            raise config._error("tls_server_config.client_allowed_sans",
                                "needs client_auth_type RequireAndVerifyClientCert")
        config.client_allowed_sans = list(sans)
    prefer = tls.get("prefer_server_cipher_suites")
    if prefer is not None:
        if not isinstance(prefer, bool):
            raise config._error("tls_server_config.prefer_server_cipher_suites",
                                "must be a boolean")
        config.prefer_server_cipher_suites = prefer
    for key, why in _IGNORED_TLS_KEYS.items():
        if tls.get(key):
            config.ignored.append(f"key=tls_server_config.{key} note=ignored: {why}")


def _apply_http(config: WebConfig, http: dict[str, Any]) -> None:
    _reject_unknown(config, "http_server_config.", http, _HTTP_KEYS)
    if http.get("http2") is not None:
        if not isinstance(http["http2"], bool):
            raise config._error("http_server_config.http2", "must be a boolean")
        if http["http2"]:
            config.ignored.append("key=http_server_config.http2 note=ignored: served over HTTP/1.1")
    headers = _mapping(config, "http_server_config.headers", http.get("headers"))
    for name, value in headers.items():
        key = f"http_server_config.headers.{name}"
        if name not in _ALLOWED_HEADERS:
            raise config._error(
                key, f"cannot be configured; allowed: {', '.join(_ALLOWED_HEADERS)}")
        if isinstance(value, int) and not isinstance(value, bool):
            # `X-XSS-Protection: 0` is a YAML integer; exporter-toolkit's YAML reads it as
            # the text "0", and a file node_exporter takes must not stop start-up here.
            value = str(value)
        value = _string(config, key, value) or ""
        allowed = _ALLOWED_HEADERS[name]
        if allowed and value not in allowed:
            raise config._error(key, f"{value!r} is not one of {', '.join(allowed)}")
        if any(c in value for c in "\r\n\0"):
            raise config._error(key, "contains a line break")
        if not _HEADER_VALUE.fullmatch(value):
            # Header bytes are Latin-1: any other character would fail every response.
            raise config._error(key, "may hold only printable ASCII (and Latin-1) characters")
        if value:
            config.headers[name] = value


def _apply_users(config: WebConfig, users: dict[str, Any]) -> None:
    for user, hashed in users.items():
        key = f"basic_auth_users.{user}"
        if not isinstance(user, str) or not user or ":" in user:
            raise config._error(key, "user names must be non-empty strings without ':'")
        # fullmatch: `$` also matches before a final newline, and a hash written as a YAML
        # block scalar (`|`) ends in one, which bcrypt then refuses at every login.
        if not isinstance(hashed, str) or not _BCRYPT_HASH.fullmatch(hashed):
            raise config._error(
                key, "not a bcrypt hash (expected $2y$10$ followed by 53 characters)")
        cost = _bcrypt_cost(hashed)
        if cost not in _BCRYPT_COSTS:
            # bcrypt refuses to check such a hash: every login would fail, with no log line.
            raise config._error(key, f"bcrypt cost {cost} is outside "
                                f"{_BCRYPT_COSTS.start}..{_BCRYPT_COSTS.stop - 1}")
        config.users[user] = hashed
    if config.users and importlib.util.find_spec("bcrypt") is None:
        raise config._error(
            "basic_auth_users",
            "checking passwords needs the bcrypt package: pip install 'inferwatch[auth]'")


def _san_text(kind: str, value: str) -> str:
    """A subjectAltName value as exporter-toolkit compares it: an IP address as Go's
    net.IP.String() writes it (OpenSSL writes IPv6 in full and in upper case), else unchanged.

    >>> _san_text("IP Address", "2001:DB8:0:0:0:0:0:1"), _san_text("DNS", "scraper")
    ('2001:db8::1', 'scraper')
    >>> _san_text("IP Address", "0:0:0:0:0:FFFF:C000:207")
    '192.0.2.7'
    """
    if kind != "IP Address":
        return value
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return value
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)  # Go prints an IPv4-mapped address as IPv4
    return str(address)


def _bcrypt_cost(hashed: str) -> int:
    """The cost (log2 of the rounds) of a hash `_BCRYPT_HASH` matched.

    >>> _bcrypt_cost("$2y$10$" + "a" * 53)
    10
    """
    return int(hashed.split("$")[2])


def _parse_basic(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


def _mapping(config: WebConfig, key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise config._error(key, f"must be a mapping, got {type(value).__name__}")
    return value


def _string(config: WebConfig, key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise config._error(key, f"must be a string, got {type(value).__name__}")
    return value


def _reject_unknown(config: WebConfig, prefix: str, section: dict[str, Any],
                    known: set[str]) -> None:
    for key in section:
        if key not in known:
            raise config._error(f"{prefix}{_key_text(key)}",
                                f"unknown key; expected one of {', '.join(sorted(known))}")


# A key as a person types one. Anything else is not echoed: a flag pointing at the wrong
# file (a password file, a private key) must not put its content in the error and the logs.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


def _key_text(key: object) -> str:
    """An unknown key as an error names it: itself when it is a plain name.

    >>> _key_text("tls_server_confg"), _key_text("root:*:20228:0:99999:7:::")
    ('tls_server_confg', '(a key that is no plain name, not shown)')
    """
    if isinstance(key, str) and _PLAIN_KEY.fullmatch(key):
        return key
    return "(a key that is no plain name, not shown)"


def _yaml_problem(exc: Exception) -> str:
    """Where and what the YAML parser found, without the lines of the file it quotes."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or not problem:
        return ""
    return f" at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _read_regular_file(path: str) -> str:
    """The text of `path`, refused (OSError) unless it is a regular file: a named pipe
    would block startup in open() until a writer came, past any stop signal."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if os.fstat(fd).st_size > MAX_WEB_CONFIG_BYTES:
            raise OSError(errno.EFBIG, f"larger than {MAX_WEB_CONFIG_BYTES} bytes")
        return handle.read(MAX_WEB_CONFIG_BYTES + 1).decode("utf-8")
