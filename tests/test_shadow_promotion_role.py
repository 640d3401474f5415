"""A challenger promoted to champion is judged as one: ``role`` on ``inferwatch_model_info``.

The serving alerts leave ``role="shadow"`` versions out. A version that served every call
as the champion but still read ``role="shadow"`` (in the process that promoted it, or in
the merged view of workers where exited ones had shadowed it) never paged.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from conftest import free_port_in
from inferwatch.core.registry import Registry
from inferwatch.core.state import ModelState
from inferwatch.multiproc.merge import merge_view
from inferwatch.multiproc.snapshot_format import RawSnapshot, Snapshot, decode, encode, model_dict
from inferwatch.multiproc.store import SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId
from inferwatch.serving.bridge import InferwatchCollector

NOW = 1_700_000_000.0
PORTS = range(27000, 27500)


class Model:
    classes_ = ["a", "b"]

    def predict(self, rows: list) -> list[str]:
        return ["a" for _ in rows]


def info_roles(registry: Registry) -> dict[str, str | None]:
    """model_version -> role of every ``inferwatch_model_info`` series `registry` exposes."""
    exposed = CollectorRegistry()
    exposed.register(InferwatchCollector(registry))
    return roles_in(generate_latest(exposed).decode())


def roles_in(text: str) -> dict[str, str | None]:
    return {s.labels["model_version"]: s.labels.get("role")
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "inferwatch_model_info"}


@pytest.fixture
def registry() -> Iterator[Registry]:
    registry = Registry()
    yield registry
    registry.close()


# --- one process ------------------------------------------------------------------------------

def test_a_challenger_instrumented_as_the_champion_after_its_shadow_closed_is_primary(
        registry: Registry) -> None:
    champion = inferwatch.instrument(Model(), name="clf", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Model(), version="2", registry=registry)
    champion.predict([[1.0]])
    assert handle.flush(30)
    handle.close()
    promoted = inferwatch.instrument(Model(), name="clf", version="2", registry=registry)
    promoted.predict([[1.0]])
    registry.drain()
    assert info_roles(registry) == {"1": "primary", "2": "primary"}


def test_a_challenger_instrumented_as_the_champion_before_its_shadow_closed_is_primary(
        registry: Registry) -> None:
    """The other order of a swap: the new champion serves first, the old shadow goes after."""
    champion = inferwatch.instrument(Model(), name="clf", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Model(), version="2", registry=registry)
    promoted = inferwatch.instrument(Model(), name="clf", version="2", registry=registry)
    assert info_roles(registry)["2"] == "primary"
    handle.close()
    promoted.predict([[1.0]])
    registry.drain()
    assert info_roles(registry)["2"] == "primary"


def test_a_closed_shadow_not_instrumented_again_stays_a_shadow(registry: Registry) -> None:
    """Removing a failing challenger must not page: it stays out of the serving alerts
    (their windows outlast the shadow) until something serves it as a champion."""
    champion = inferwatch.instrument(Model(), name="clf", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Model(), version="2", registry=registry)
    handle.close()
    champion.predict([[1.0]])
    registry.drain()
    assert info_roles(registry) == {"1": "primary", "2": "shadow"}


def test_a_former_champion_started_as_a_shadow_is_a_shadow(registry: Registry) -> None:
    old = inferwatch.instrument(Model(), name="clf", version="1", registry=registry)
    first = inferwatch.shadow(old, Model(), version="2", registry=registry)
    first.close()
    champion = inferwatch.instrument(Model(), name="clf", version="2", registry=registry)
    handle = inferwatch.shadow(champion, Model(), version="1", registry=registry)
    assert info_roles(registry) == {"1": "shadow", "2": "primary"}
    handle.close()


def test_a_version_never_shadowed_gets_no_role(registry: Registry) -> None:
    inferwatch.instrument(Model(), name="clf", version="1", registry=registry)
    inferwatch.instrument(Model(), name="clf", version="1", registry=registry)
    assert info_roles(registry) == {"1": None}


# --- the merged view of workers ---------------------------------------------------------------

def state(version: str, **info: str) -> ModelState:
    model = ModelState("clf", version, info={"framework": "sklearn", "task": "classification",
                                            **info})
    model.inc("inferwatch_requests_total", ("ok",), 1)
    return model


def snapshot(*states: ModelState) -> RawSnapshot:
    return decode(encode(Snapshot(models=[model_dict(s) for s in states], written_at=NOW)))


def merged_info(live: list[RawSnapshot], exited: list[RawSnapshot]) -> dict[str, dict]:
    """model_version -> merged info; the exited snapshots are listed first, so nothing
    rests on the order a directory happens to list them in."""
    view = merge_view([*exited, *live], NOW, without_gauges={id(raw) for raw in exited})
    return {s.version: s.info for s in view.states}


def test_exited_workers_labels_do_not_fill_in_those_live_workers_no_longer_carry() -> None:
    """Old workers: champion 1 and shadow 2; the new ones serve 2 as the champion."""
    old = snapshot(state("1", role="primary"), state("2", role="shadow"))
    new = snapshot(state("2"))
    info = merged_info(live=[new, snapshot(state("2"))], exited=[old])
    assert "role" not in info["2"]
    assert info["1"]["role"] == "primary"  # held by no live worker: the exited ones say


def test_a_live_shadow_anywhere_keeps_the_version_a_shadow() -> None:
    """Part way through the rollout one live worker still shadows version 2."""
    shadowing = snapshot(state("1", role="primary"), state("2", role="shadow"))
    for live in ([snapshot(state("2")), shadowing],
                 [snapshot(state("2", role="primary")), shadowing],
                 [shadowing, snapshot(state("2", role="primary"))]):
        assert merged_info(live=live, exited=[])["2"]["role"] == "shadow"


def test_a_known_task_of_an_exited_worker_stands_for_a_live_one_that_saw_no_prediction(
        ) -> None:
    info = merged_info(live=[snapshot(state("2", task="auto"))],
                       exited=[snapshot(state("2", role="shadow"))])
    assert info["2"] == {"framework": "sklearn", "task": "classification"}


def test_archived_labels_yield_to_live_workers_in_a_directory(tmp_path: Path) -> None:
    """As the exporter reads it: the archive of exited workers and a live worker's file."""
    directory = SnapshotDirectory(str(tmp_path))
    exited = dead_worker()
    directory.write(exited.name, encode(Snapshot(models=[model_dict(s) for s in (
        state("1", role="primary"), state("2", role="shadow", build="old"))],
        written_at=time.time())), exited)
    assert directory.fold(WorkerId.current()) == [exited.name]
    me = WorkerId.current()
    directory.write(me.name, encode(Snapshot(models=[model_dict(state("2"))],
                                             written_at=time.time())), me)
    now = time.time()
    view = SnapshotDirectory(str(tmp_path)).read_view(now)
    exposed = CollectorRegistry()

    class Source:
        def collect(self) -> list:
            return view.families(now)

    exposed.register(Source())  # type: ignore[arg-type]
    text = generate_latest(exposed).decode()
    assert roles_in(text) == {"1": "primary", "2": None}
    assert 'build="old"' not in text


label_values = st.sampled_from(["", "x", "y", "shadow", "primary"])
infos = st.dictionaries(st.sampled_from(["role", "build", "owner", "task"]), label_values,
                        max_size=4)


@settings(max_examples=200, deadline=None)
@given(live=st.lists(infos, min_size=1, max_size=3), exited=st.lists(infos, max_size=3))
def test_merged_labels_of_a_version_come_from_its_live_workers(live: list[dict],
                                                               exited: list[dict]) -> None:
    raws_live = [snapshot(ModelState("clf", "2", info=info)) for info in live]
    raws_exited = [snapshot(ModelState("clf", "2", info=info)) for info in exited]
    info = merged_info(live=raws_live, exited=raws_exited)["2"]
    for key, value in info.items():
        if key == "task" and any(one.get("task", "auto") == "auto" for one in live):
            continue  # a task known elsewhere stands for one no live worker has seen
        assert any(one.get(key) == value for one in live), (key, value)
    assert (info.get("role") == "shadow") == any(one.get("role") == "shadow" for one in live)


def dead_worker() -> WorkerId:
    """The identity of a real process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return WorkerId(process.pid, 1)


# --- a real gunicorn rollout ------------------------------------------------------------------

APP = textwrap.dedent("""
    import os
    import inferwatch

    VERSION, SHADOW = open(os.environ["PROMOTION_VERSIONS"]).read().split()

    class Model:
        classes_ = ["a", "b"]

        def predict(self, rows):
            return ["a" for _ in rows]

    model = inferwatch.instrument(Model(), name="clf", version=VERSION)
    if SHADOW != "none":
        handle = inferwatch.shadow(model, Model(), version=SHADOW)
    metrics = inferwatch.make_wsgi_app()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/predict":
            model.predict([[1.0]])
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [VERSION.encode()]
        return metrics(environ, start_response)
""")


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def wait_for(condition, what: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            if condition():
                return
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s\n{log.read_text()}")
        time.sleep(0.1)


def live_workers(master: subprocess.Popen) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(master.pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
    return found


@pytest.mark.integration
def test_a_gunicorn_rollout_promoting_the_challenger_ends_with_it_judged(tmp_path: Path
                                                                         ) -> None:
    (tmp_path / "promotion_app.py").write_text(APP)
    versions = tmp_path / "versions"
    versions.write_text("1 2")
    directory = tmp_path / "multiproc"
    directory.mkdir()
    log = tmp_path / "gunicorn.log"
    url = f"http://127.0.0.1:{free_port_in(PORTS)}"
    environment = {**os.environ, "INFERWATCH_MULTIPROC_DIR": str(directory),
                   "PROMOTION_VERSIONS": str(versions),
                   "PYTHONPATH": os.pathsep.join(sys.path)}
    with open(log, "wb") as log_file:
        master = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", url[7:],
             "--chdir", str(tmp_path), "--graceful-timeout", "5", "--log-level", "warning",
             "promotion_app:app"],
            env=environment, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: len(live_workers(master)) == 2 and get(url + "/metrics") != "",
                 "gunicorn did not start", log, timeout=120)
        for _ in range(10):
            get(url + "/predict")
        wait_for(lambda: roles_in(get(url + "/metrics")) == {"1": "primary", "2": "shadow"},
                 "the shadow did not show", log)
        versions.write_text("2 none")  # the rollout: champion 2, no shadow
        for old in live_workers(master):
            old.send_signal(signal.SIGTERM)
            old.wait(15)
            wait_for(lambda: len(live_workers(master)) == 2, "no worker replaced it", log)
        new_workers = {w.pid for w in live_workers(master)}

        def promoted() -> bool:
            served = {get(url + "/predict") for _ in range(4)}
            published = {int(name.split("-")[1]) for name in os.listdir(directory)
                         if name.startswith("worker-") and name.endswith(".snapshot")}
            return served == {"2"} and new_workers <= published and \
                roles_in(get(url + "/metrics")).get("2") != "shadow"

        wait_for(promoted, "version 2, served by every worker as the champion, is no longer "
                 "a shadow", log, timeout=20)
    finally:
        if master.poll() is None:
            master.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                master.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(master.pid, signal.SIGKILL)  # its own session: only what it started
        master.wait(timeout=5)
