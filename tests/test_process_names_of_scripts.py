"""The `process` label of a server started through a script's #! line: the kernel names the
process after the script (cut to 15 bytes) while the command line starts with the
interpreter, so the whole name is an argument further on."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.standalone.collectors.process import ProcessCollector, full_name
from inferwatch.standalone.scrape import Scraper

PYTHON = os.path.realpath(sys.executable)
COMM_BYTES = 15

# Forks one child (a worker, as gunicorn's or multiprocessing's are: same command line),
# says both pids, then waits to be killed.
SERVER = """\
import os, sys, time
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
sys.stdout.write(f"{os.getpid()} {child}\\n")
sys.stdout.flush()
time.sleep(60)
"""


def unique_name(tail: str = "-model-server") -> str:
    """A program name whose first 15 bytes, the kernel's cut, no other process has: a
    process of the same name elsewhere on the host must not join the series compared."""
    return f"iw{uuid.uuid4().hex[:13]}{tail}"


def labels_by_pid(collector: ProcessCollector) -> dict[str, str]:
    registry = CollectorRegistry()
    registry.register(Scraper([collector], timeout=5.0))
    found: dict[str, str] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name == "inferwatch_exporter_collector_success":
                assert sample.value == 1
            if sample.name == "inferwatch_process_threads":
                found[sample.labels["pid"]] = sample.labels["process"]
    return found


class Server:
    """A script started by its path, as a supervisor or a console entry point starts it."""

    def __init__(self, argv: list[str], cwd: Path | None = None) -> None:
        self.process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        assert line, f"{argv} did not start"
        self.pids = line.split()

    def stop(self) -> None:
        for pid in self.pids[1:]:
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        self.process.kill()
        self.process.wait()
        self.process.stdout.close()


def script(directory: Path, name: str, shebang: str) -> Path:
    path = directory / name
    path.write_text(f"#!{shebang}\n{SERVER}")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("options", ["", " -u", " -S", " -X utf8"],
                         ids=["plain", "option", "other option", "option with value"])
def test_a_script_started_by_its_shebang_is_labelled_with_its_whole_name(
        tmp_path: Path, options: str) -> None:
    name = unique_name()
    program = script(tmp_path, name, PYTHON + options)
    server = Server([str(program), "--port=8000", "serve"])
    try:
        parent, child = server.pids
        assert Path(f"/proc/{parent}/comm").read_text() == name[:COMM_BYTES] + "\n"
        by_pid = labels_by_pid(ProcessCollector(pids=[int(parent)]))
        by_stub = labels_by_pid(ProcessCollector(names=[name[:COMM_BYTES]]))
        by_whole = labels_by_pid(ProcessCollector(names=[name]))
    finally:
        server.stop()
    assert by_pid == by_stub == by_whole == {parent: name, child: name}


def test_a_script_run_through_a_relative_path_is_labelled_whole(tmp_path: Path) -> None:
    name = unique_name()
    (tmp_path / "bin").mkdir()
    script(tmp_path / "bin", name, PYTHON)
    server = Server([f"./bin/{name}"], cwd=tmp_path)
    try:
        found = labels_by_pid(ProcessCollector(pids=[int(server.pids[0])], children=False))
    finally:
        server.stop()
    assert found == {server.pids[0]: name}


def test_a_name_of_exactly_15_bytes_is_not_lengthened_by_a_later_argument(
        tmp_path: Path) -> None:
    # Not cut at all: an argument that starts with the same 15 bytes (a weights file named
    # after the server) must not become the name.
    name = unique_name(tail="")
    assert len(name.encode()) == COMM_BYTES
    weights = str(tmp_path / f"{name}-weights.bin")
    program = script(tmp_path, name, PYTHON)
    link = tmp_path / "links" / name
    link.parent.mkdir()
    link.symlink_to(PYTHON)
    servers = [Server([str(program), weights]), Server([str(link), "-c", SERVER, weights])]
    try:
        found = labels_by_pid(ProcessCollector(names=[name]))
    finally:
        for server in servers:
            server.stop()
    assert found == {pid: name for server in servers for pid in server.pids}


def test_a_long_interpreter_running_a_module_keeps_the_interpreter_name(
        tmp_path: Path) -> None:
    # `python -m pkg.mod`: the kernel names the process after the program it ran, the
    # interpreter; its arguments (the module) must not rename it.
    name = unique_name(tail="-python-interpreter")
    link = tmp_path / name
    link.symlink_to(PYTHON)
    module = tmp_path / f"{name[:COMM_BYTES]}_module.py"
    module.write_text(SERVER)
    server = Server([str(link), "-m", module.stem, str(module)], cwd=tmp_path)
    try:
        found = labels_by_pid(ProcessCollector(pids=[int(server.pids[0])], children=False))
    finally:
        server.stop()
    assert found == {server.pids[0]: name}


# --- the rule itself, over names and command lines -------------------------------------------

def cut(name: str) -> str:
    """The kernel's comm: the first 15 bytes, a letter cut in two kept as surrogates."""
    return name.encode()[:COMM_BYTES].decode("utf-8", "surrogateescape")


_NAMES = st.text(st.characters(categories=["L", "N"], include_characters="-_."),
                 min_size=1, max_size=30).filter(
    lambda n: len(n.encode()) > COMM_BYTES and not n.startswith("-"))
_OPTIONS = st.lists(st.sampled_from(["-u", "-S", "-E", "-OO", "-X", "-W", "--"]), max_size=3)
_ARGUMENTS = st.lists(st.sampled_from(["--port=8000", "serve", "-v", "app:app", "8000"]),
                      max_size=3)


@given(name=_NAMES, options=_OPTIONS, arguments=_ARGUMENTS,
       interpreter=st.sampled_from(["/usr/bin/python3", "/bin/sh", "/srv/venv/bin/python"]),
       directory=st.sampled_from(["", "./", "/srv/bin/", "bin/"]))
def test_the_script_after_the_interpreter_and_its_options_names_the_process(
        name: str, options: list[str], arguments: list[str], interpreter: str,
        directory: str) -> None:
    cmdline = [interpreter, *options, directory + name, *arguments]
    assert full_name(cut(name), cmdline) == name


@given(name=_NAMES, arguments=_ARGUMENTS)
def test_an_elf_program_is_still_named_by_its_own_path(name: str, arguments: list[str]) -> None:
    assert full_name(cut(name), [f"/opt/{name}", *arguments]) == name
    # A program whose own path no longer holds the name (argv[0] rewritten): an option that
    # starts with the cut name is not a program.
    assert full_name(cut(name), ["server", f"-{name}", *arguments]) == cut(name)
