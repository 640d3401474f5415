"""`inferwatch report --metrics https://...` of a status page behind TLS as the web-config
file serves it: a certificate from a private CA (--cacert) and client certificates the
server requires (--cert, --key). Real TLS on loopback: ``inferwatch.serve`` with a
web-config file, certificates made with the openssl binary."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import inferwatch
from inferwatch.cli import main
from inferwatch.core.registry import Registry

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="needs the openssl binary to make certificates")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _signed(directory: Path, name: str, subject: str, extension: str) -> None:
    """A key `name`.key and its certificate `name`.crt signed by the CA in `directory`."""
    (directory / f"{name}.ext").write_text(extension + "\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
             cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.crt",
             "-extfile", f"{name}.ext", cwd=directory)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate, both
    signed by it, and another CA that signed neither. The CAs are as ``openssl req -x509``
    makes one by default, without a key usage extension: what Python 3.13's strict checks
    refuse, and curl and Prometheus accept."""
    directory = tmp_path_factory.mktemp("tls")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
                 "-subj", f"/CN=inferwatch test {ca}", cwd=directory)
    _signed(directory, "server", "/CN=127.0.0.1",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    _signed(directory, "client", "/CN=prometheus", "extendedKeyUsage=clientAuth")
    return directory


@pytest.fixture(scope="module")
def status_url(certs: Path):
    """The https URL of a status page that requires a client certificate of the CA."""
    (certs / "web.yml").write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n")
    registry = Registry()
    registry.monitor("fraud", "1").record_call(0.01, 0.5)
    registry.drain()
    try:
        with inferwatch.serve(port=0, addr="127.0.0.1", registry=registry,
                              web_config_file=str(certs / "web.yml")) as server:
            yield f"https://127.0.0.1:{server.port}/"
    finally:
        registry.close()


def _report(url: str, out: Path, *flags: str) -> int:
    return main(["report", "--metrics", url, *flags, "-o", str(out)])


def test_a_page_behind_a_private_ca_and_client_certificates_is_read(
        certs: Path, status_url: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.html"
    status = _report(status_url, out, "--cacert", str(certs / "ca.crt"),
                     "--cert", str(certs / "client.crt"), "--key", str(certs / "client.key"))
    assert status == 0, capsys.readouterr().err
    assert "fraud" in out.read_text()


def test_without_the_ca_the_server_is_not_trusted(certs: Path, status_url: str,
                                                  tmp_path: Path, capsys) -> None:
    status = _report(status_url, tmp_path / "r.html", "--cert", str(certs / "client.crt"),
                     "--key", str(certs / "client.key"))
    assert status == 2
    err = capsys.readouterr().err
    assert "CERTIFICATE_VERIFY_FAILED" in err and "give the CA with --cacert" in err, err


def test_a_ca_that_signed_another_server_is_not_trusted(certs: Path, status_url: str,
                                                        tmp_path: Path, capsys) -> None:
    # --cacert replaces the trusted CAs, as curl's does: only those in the file count.
    status = _report(status_url, tmp_path / "r.html", "--cacert", str(certs / "other-ca.crt"),
                     "--cert", str(certs / "client.crt"), "--key", str(certs / "client.key"))
    assert status == 2
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err


def test_without_a_client_certificate_the_server_refuses(certs: Path, status_url: str,
                                                         tmp_path: Path, capsys) -> None:
    status = _report(status_url, tmp_path / "r.html", "--cacert", str(certs / "ca.crt"))
    assert status == 2
    err = capsys.readouterr().err
    assert "cannot read the status snapshot" in err and "--cert" in err, err
    assert not (tmp_path / "r.html").exists()


def test_a_certificate_with_its_key_in_the_same_file_needs_no_key_flag(
        certs: Path, status_url: str, tmp_path: Path, capsys) -> None:
    both = tmp_path / "client.pem"
    both.write_bytes((certs / "client.crt").read_bytes() + (certs / "client.key").read_bytes())
    status = _report(status_url, tmp_path / "r.html", "--cacert", str(certs / "ca.crt"),
                     "--cert", str(both))
    assert status == 0, capsys.readouterr().err


@pytest.mark.parametrize(("flags", "words"), [
    (["--cacert", "{dir}/missing.crt"], ["--cacert", "missing.crt", "No such file"]),
    (["--cacert", "{dir}"], ["--cacert", "directory"]),
    (["--cacert", "{certs}/client.key"], ["--cacert", "client.key", "no certificate"]),
    (["--cert", "{dir}/missing.crt", "--key", "{certs}/client.key"],
     ["--cert", "missing.crt", "No such file"]),
    (["--cert", "{certs}/client.crt", "--key", "{dir}/missing.key"],
     ["--key", "missing.key", "No such file"]),
    (["--cert", "{certs}/client.crt", "--key", "{certs}/server.key"],
     ["--cert", "--key", "do not match"]),
    (["--cert", "{certs}/client.crt"], ["--cert", "client.crt", "no private key", "--key"]),
    (["--key", "{certs}/client.key"], ["--key", "--cert"]),
    (["--cacert", ""], ["--cacert", "empty"]),
])
def test_unusable_tls_files_are_named(certs: Path, tmp_path: Path, capsys, flags: list[str],
                                      words: list[str]) -> None:
    given = [f.format(dir=tmp_path, certs=certs) for f in flags]
    status = _report("https://127.0.0.1:9/", tmp_path / "r.html", *given)
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for word in words:
        assert word in err, err


def test_an_encrypted_key_is_refused_without_asking_for_its_passphrase(
        certs: Path, tmp_path: Path, capsys) -> None:
    _openssl("pkey", "-in", str(certs / "client.key"), "-aes256", "-passout", "pass:secret",
             "-out", str(tmp_path / "locked.key"), cwd=tmp_path)
    status = _report("https://127.0.0.1:9/", tmp_path / "r.html",
                     "--cert", str(certs / "client.crt"), "--key", str(tmp_path / "locked.key"))
    assert status == 2
    err = capsys.readouterr().err
    assert "--key" in err and "encrypted" in err, err


@pytest.mark.parametrize("flag", ["--cacert", "--cert", "--key"])
def test_tls_files_are_for_https_urls_only(certs: Path, tmp_path: Path, capsys,
                                           flag: str) -> None:
    status = _report("http://127.0.0.1:9/", tmp_path / "r.html", flag, str(certs / "ca.crt"))
    assert status == 2
    err = capsys.readouterr().err
    assert flag in err and "https://" in err, err


def test_the_checks_are_curls_not_pythons_strict_ones(certs: Path) -> None:
    """On Python 3.13 every page behind a CA made by `openssl req -x509` failed with "CA cert
    does not include key usage extension"; the chain and host name are still checked."""
    import ssl

    from inferwatch.report.cli import _tls_context

    context = _tls_context(str(certs / "ca.crt"), None, None)
    assert not context.verify_flags & ssl.VERIFY_X509_STRICT
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
