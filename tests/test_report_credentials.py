"""The credentials in ``inferwatch report --metrics http://user:password@host/``: sent to
that origin only, never printed, and reports written again keep the mode they were given."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from inferwatch.cli import main
from inferwatch.core.registry import Registry
from inferwatch.report.model import write_page
from inferwatch.report.status import snapshot_json
from loopback_http import LoopbackServer, QuietHandler

CREDENTIALS = "Basic " + base64.b64encode(b"prometheus:s3cret").decode()


def _snapshot() -> bytes:
    registry = Registry()
    try:
        registry.monitor("fraud", "1").record_call(0.01, 0.5)
        registry.drain()
        return snapshot_json(registry.states())
    finally:
        registry.close()


def _host(redirect_to: str | None, seen: list[str | None]) -> LoopbackServer:
    """A status page at /page that wants the credentials, or a redirect to `redirect_to`
    from every other path; `seen` gets each request's Authorization header."""
    body = _snapshot()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            if redirect_to is not None and not self.path.startswith("/page"):
                self.send_response(302)
                self.send_header("Location", redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.headers.get("Authorization") != CREDENTIALS:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return LoopbackServer(Handler)


def _with_credentials(url: str) -> str:
    return url.replace("http://", "http://prometheus:s3cret@", 1)


def test_a_redirect_to_another_origin_gets_no_credentials(tmp_path: Path, capsys) -> None:
    elsewhere: list[str | None] = []
    here: list[str | None] = []
    with _host(None, elsewhere) as other, \
            _host(other.url + "page?format=json", here) as first:
        status = main(["report", "--metrics", _with_credentials(first.url),
                       "-o", str(tmp_path / "r.html")])
    assert here == [CREDENTIALS]
    assert elsewhere == [None]
    assert status == 2  # the other host asked for credentials it was not given
    assert "s3cret" not in capsys.readouterr().err


def test_a_redirect_within_the_status_page_keeps_the_credentials(tmp_path: Path,
                                                                   capsys) -> None:
    seen: list[str | None] = []
    with _host("/page?format=json", seen) as host:
        status = main(["report", "--metrics", _with_credentials(host.url),
                       "-o", str(tmp_path / "r.html")])
    assert status == 0, capsys.readouterr().err
    assert seen == [CREDENTIALS, CREDENTIALS]


@pytest.mark.parametrize("url", ["http://prometheus:s3cret@127.0.0.1:80x/",
                                 "htps://prometheus:s3cret@host/",
                                 "ftp://prometheus:s3cret@host/"])
def test_a_bad_metrics_url_is_named_without_its_password(tmp_path: Path, capsys,
                                                         url: str) -> None:
    assert main(["report", "--metrics", url, "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "s3cret" not in err and "prometheus:***@" in err, err


@pytest.mark.parametrize("gateway", ["https://batch:s3cret@gw.example:9091\n",
                                     "https://batch:s3cret@gw.example:9091 ",
                                     "batch:s3cret@gw example:9091"])
def test_a_gateway_with_a_space_is_named_without_its_password(gateway: str) -> None:
    import inferwatch

    with pytest.raises(ValueError, match="space or control character") as raised:
        inferwatch.push(gateway, job="nightly")
    assert "s3cret" not in str(raised.value) and "batch:***@" in str(raised.value)


def test_a_report_made_private_stays_private_when_written_again(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    previous = os.umask(0o022)
    try:
        write_page(path, "<p>first</p>")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # a new one: the umask's mode
        path.chmod(0o600)
        write_page(path, "<p>ACME Corp</p>")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="utf-8") == "<p>ACME Corp</p>"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
