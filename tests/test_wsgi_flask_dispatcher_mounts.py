"""A Flask app mounted under a prefix by werkzeug's ``DispatcherMiddleware`` (directly, or
in a dispatcher mounted by another) still has its 500s counted under the exception's class,
as one at the dispatcher's root has: under a real gunicorn and through werkzeug's test
client."""

from __future__ import annotations

import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

from conftest import free_port
from inferwatch.serving.middleware import WSGIInstrumentMiddleware
from processes import serving_app
from waiting import wait_until

APP = '''
import inferwatch
from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from inferwatch.serving.middleware import WSGIInstrumentMiddleware

model = inferwatch.instrument(lambda x: 0.7, name="fraud", version="1", task="regression")

def scoring(name):
    api = Flask(name)

    @api.get("/score/<x>")
    def score(x):
        if x == "own":
            raise KeyError("the app's own bug")
        return {"p": model(x)}

    return api

front = Flask("front")

@front.get("/health")
def health():
    return "ok"

v2 = DispatcherMiddleware(Flask("v2-root").wsgi_app, {"/beta": scoring("beta").wsgi_app})
app = WSGIInstrumentMiddleware(
    DispatcherMiddleware(front.wsgi_app, {"/api": scoring("api").wsgi_app, "/v2": v2,
                                          "/metrics": inferwatch.make_wsgi_app()}),
    routes={"/api/score/<x>": "fraud", "/v2/beta/score/<x>": "fraud"})
'''


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def errors_by_type(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=60) as response:
        text = response.read().decode()
    return {s.labels["error_type"]: s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "inferwatch_errors_total" and s.value}


@pytest.mark.integration
def test_gunicorn_a_mounted_flask_apps_exception_keeps_its_class(tmp_path: Path) -> None:
    (tmp_path / "mounted_app.py").write_text(textwrap.dedent(APP))
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--log-level", "warning", "mounted_app:app"]
    with serving_app(args, port, app_dir=tmp_path, log_dir=tmp_path,
                     ready_path="/health") as url:
        assert get(f"{url}/api/score/1") == 200
        for path in ("/api/score/own", "/api/score/own", "/v2/beta/score/own"):
            assert get(url + path) == 500
        found = wait_until(lambda: (lambda errors: errors if sum(errors.values()) >= 3
                                    else None)(errors_by_type(url)),
                           what="the three errors to be counted")
        assert found == {"KeyError": 3}


def test_mounted_flask_apps_found_through_nested_dispatchers(registry) -> None:
    registry.monitor("fraud", "1")
    apps = {name: Flask(name) for name in ("root", "mounted", "deeper", "sibling")}
    for app in apps.values():
        app.add_url_rule("/boom", app.name, lambda: {}["missing"])
    inner = DispatcherMiddleware(apps["deeper"].wsgi_app, {"/x": apps["sibling"].wsgi_app})
    dispatcher = DispatcherMiddleware(apps["root"].wsgi_app,
                                      {"/m": apps["mounted"], "/n": inner})
    client = Client(WSGIInstrumentMiddleware(dispatcher, model="fraud", registry=registry))
    for path in ("/boom", "/m/boom", "/n/boom", "/n/x/boom"):
        # Buffered: the whole body read, then closed, as a server does; the request ends.
        assert client.get(path, buffered=True).status_code == 500
    registry.drain()
    errors = registry.monitor("fraud", "1").state.counters["inferwatch_errors_total"]
    assert {key: count for key, count in errors.items() if count} == {("KeyError",): 4}
