"""The exporter-toolkit web-config format: parsing, errors that name the key, basic auth."""

from __future__ import annotations

import logging
import re
import ssl
import subprocess
from base64 import b64encode
from pathlib import Path

import bcrypt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.serving.web_config import WebConfig, WebConfigError, load_web_config


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("webconfig") / "certs"
    directory.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(directory / "server.key"), "-out", str(directory / "server.crt"),
         "-days", "2", "-subj", "/CN=localhost"],
        check=True, capture_output=True, timeout=60)
    return directory


@pytest.fixture(scope="module")
def hashed() -> str:
    return bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()


def write(directory: Path, text: str) -> Path:
    path = directory / "web.yml"
    path.write_text(text)
    return path


def basic(user: str, password: str) -> str:
    return "Basic " + b64encode(f"{user}:{password}".encode()).decode()


def test_relative_paths_resolve_against_the_config_directory(cert_dir, tmp_path, monkeypatch):
    path = write(cert_dir.parent, (
        "tls_server_config:\n  cert_file: certs/server.crt\n  key_file: certs/server.key\n"
        "  min_version: TLS13\n"))
    monkeypatch.chdir(tmp_path)  # somewhere the relative paths would not resolve

    config = load_web_config(path)
    context = config.ssl_context()

    assert config.cert_file == str(cert_dir / "server.crt")
    assert isinstance(context, ssl.SSLContext)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert context.verify_mode == ssl.CERT_NONE


def test_an_empty_file_means_no_tls_and_no_auth(tmp_path):
    config = load_web_config(write(tmp_path, ""))

    assert config.ssl_context() is None
    assert not config.auth_required
    assert config.check_basic_auth(None)


def test_go_only_tls_keys_are_ignored_with_a_logged_note(cert_dir, caplog):
    caplog.set_level(logging.WARNING, logger="inferwatch.serving.web_config")
    path = write(cert_dir.parent, (
        "tls_server_config:\n  cert_file: certs/server.crt\n  key_file: certs/server.key\n"
        "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n"
        "  curve_preferences: [X25519]\n"))

    config = load_web_config(path)

    assert config.ssl_context() is not None
    notes = [r.getMessage() for r in caplog.records]
    assert any("tls_server_config.cipher_suites" in n and "ignored" in n for n in notes)
    assert any("tls_server_config.curve_preferences" in n for n in notes)


BAD_CONFIGS = [
    ("tls_server_config: [1, 2\n", "not valid YAML"),
    ("- just\n- a list\n", "top level"),
    ("tls_config:\n  cert_file: a\n", "tls_config"),
    ("tls_server_config:\n  cert_fle: x\n", "tls_server_config.cert_fle"),
    ("tls_server_config:\n  key_file: certs/server.key\n", "tls_server_config.cert_file"),
    ("tls_server_config:\n  cert_file: certs/missing.crt\n  key_file: certs/server.key\n",
     "missing.crt"),
    ("tls_server_config:\n  cert_file: certs/server.crt\n  key_file: certs/server.key\n"
     "  min_version: TLS14\n", "tls_server_config.min_version"),
    ("tls_server_config:\n  cert_file: certs/server.crt\n  key_file: certs/server.key\n"
     "  min_version: TLS13\n  max_version: TLS12\n", "tls_server_config.min_version"),
    ("tls_server_config:\n  cert_file: certs/server.crt\n  key_file: certs/server.key\n"
     "  min_version: TLS10\n", "tls_server_config.min_version: TLS10 is below TLS 1.2"),
    ("tls_server_config:\n  cert_file: certs/server.crt\n  key_file: certs/server.key\n"
     "  min_version: TLS11\n", "tls_server_config.min_version: TLS11 is below TLS 1.2"),
    ("tls_server_config:\n  cert_file: certs/server.crt\n  key_file: certs/server.key\n"
     "  max_version: TLS11\n", "tls_server_config.max_version: TLS11 is below TLS 1.2"),
    ("tls_server_config:\n  cert_file: certs/server.crt\n  key_file: certs/server.key\n"
     "  client_auth_type: Sometimes\n", "tls_server_config.client_auth_type"),
    ("tls_server_config:\n  cert_file: certs/server.crt\n  key_file: certs/server.key\n"
     "  client_ca_file: certs/server.crt\n", "tls_server_config.client_ca_file"),
    ("tls_server_config:\n  cert_file: certs/server.crt\n  key_file: certs/server.key\n"
     "  client_auth_type: RequireAndVerifyClientCert\n", "tls_server_config.client_ca_file"),
    ("tls_server_config:\n  cert_file: certs/server.crt\n  key_file: certs/server.key\n"
     "  client_allowed_sans: [a]\n", "tls_server_config.client_allowed_sans"),
    ("tls_server_config:\n  cert: '-----BEGIN CERTIFICATE-----'\n", "tls_server_config.cert"),
    ("http_server_config:\n  headers:\n    X-Powered-By: me\n",
     "http_server_config.headers.X-Powered-By"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
     "http_server_config.headers.X-Frame-Options"),
    ("http_server_config:\n  http2: maybe\n", "http_server_config.http2"),
    ("basic_auth_users:\n  alice: plaintext\n", "basic_auth_users.alice"),
    ("basic_auth_users:\n  alice: 12\n", "basic_auth_users.alice"),
    ("basic_auth_users: [alice]\n", "basic_auth_users"),
    ("rate_limit:\n  interval: 1s\n  burst: 20\n", "rate_limit"),
]


@pytest.mark.parametrize("text, key", BAD_CONFIGS)
def test_bad_configs_raise_an_error_naming_the_file_and_the_key(cert_dir, text, key):
    path = write(cert_dir.parent, text)

    with pytest.raises(WebConfigError) as raised:
        load_web_config(path)

    assert str(path) in str(raised.value)
    assert key in str(raised.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(WebConfigError, match=re.escape(str(tmp_path / "absent.yml"))):
        load_web_config(tmp_path / "absent.yml")


def test_basic_auth_accepts_the_right_password_only(tmp_path, hashed):
    config = load_web_config(write(tmp_path, f"basic_auth_users:\n  prometheus: '{hashed}'\n"))

    assert config.check_basic_auth(basic("prometheus", "s3cret"))
    assert not config.check_basic_auth(basic("prometheus", "S3cret"))
    assert not config.check_basic_auth(basic("nobody", "s3cret"))
    assert not config.check_basic_auth(None)
    assert not config.check_basic_auth("Bearer abc")
    assert not config.check_basic_auth("Basic not-base64!")
    assert not config.check_basic_auth("Basic " + b64encode(b"no-colon").decode())
    assert not config.check_basic_auth(basic("prometheus", "x" * 100))  # over bcrypt's 72 bytes


def test_htpasswd_style_2y_hashes_are_accepted(tmp_path, hashed):
    config = load_web_config(write(tmp_path, "basic_auth_users:\n"
                                             f"  prometheus: '{hashed.replace('$2b$', '$2y$')}'\n"))

    assert config.check_basic_auth(basic("prometheus", "s3cret"))


def test_a_verified_password_is_not_checked_with_bcrypt_again(tmp_path, hashed, monkeypatch):
    config = load_web_config(write(tmp_path, f"basic_auth_users:\n  prometheus: '{hashed}'\n"))
    calls = []
    real_checkpw = bcrypt.checkpw

    def counting_checkpw(password, hashed_password):
        calls.append(password)
        return real_checkpw(password, hashed_password)

    monkeypatch.setattr(bcrypt, "checkpw", counting_checkpw)
    right = basic("prometheus", "s3cret")

    assert config.check_basic_auth_cached(right) is None  # nothing verified yet
    results = [config.check_basic_auth(right) for _ in range(5)]
    assert config.check_basic_auth_cached(right) is True
    assert config.check_basic_auth_cached(basic("prometheus", "wrong")) is None
    assert not config.check_basic_auth(basic("prometheus", "wrong"))
    assert not config.check_basic_auth(basic("prometheus", "wrong"))

    assert results == [True] * 5
    assert calls == [b"s3cret", b"wrong", b"wrong"]  # failures are never cached


def test_users_without_colons_only(tmp_path, hashed):
    with pytest.raises(WebConfigError, match=re.escape("basic_auth_users.a:b")):
        load_web_config(write(tmp_path, f"basic_auth_users:\n  'a:b': '{hashed}'\n"))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=60),
                 st.binary(max_size=60).map(lambda b: "Basic " + b64encode(b).decode())))
def test_any_authorization_header_is_refused_without_raising(header):
    config = WebConfig(path="inline", users={
        "prometheus": "$2b$04$" + "a" * 53,  # a well-formed hash no password matches
    })

    assert config.check_basic_auth(header) is False


@pytest.mark.parametrize("content", [
    "root:$6$saltsalt$hashhashhash:20228:0:99999:7:::\n",  # /etc/shadow, by mistake
    "secret-token-value: [unclosed\n",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC: x\n",
])
def test_a_wrong_file_is_refused_without_its_content_in_the_error(tmp_path, content):
    # The error went to stderr and the logs with the file's lines in it: the whole first
    # line as an "unknown key", or the YAML parser's quote of the lines around a mistake.
    path = tmp_path / "web.yml"
    path.write_text(content)
    with pytest.raises(WebConfigError) as refused:
        load_web_config(path)
    message = str(refused.value)
    assert message.startswith(f"web config {path}: ")
    for secret in ("hashhashhash", "saltsalt", "secret-token-value", "MIIEvQIBADAN"):
        assert secret not in message
    assert "\n" not in message


def test_a_typo_is_still_named():
    # Plain names are shown: they are what a person mistypes.
    from inferwatch.serving.web_config import _key_text

    assert _key_text("tls_server_confg") == "tls_server_confg"


def test_a_named_pipe_is_refused_at_once(tmp_path):
    # open() of a FIFO waits for a writer: startup hung, and SIGTERM could not stop it.
    import os

    fifo = tmp_path / "web.yml"
    os.mkfifo(fifo)
    with pytest.raises(WebConfigError, match="cannot read the file: not a regular file"):
        load_web_config(fifo)
