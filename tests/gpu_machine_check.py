"""On a machine with NVIDIA GPUs: the exporter's GPU series against ``nvidia-smi``, field by field.

Not part of the test suite (no GPU in CI). Run it from a checkout on a GPU host:

    python -m venv .venv && .venv/bin/pip install -q -e '.[test]'
    .venv/bin/python tests/gpu_machine_check.py

It starts ``inferwatch-exporter`` (the one beside the interpreter, or
``$INFERWATCH_EXPORTER``) on a free loopback port, scrapes it, queries
``nvidia-smi --query-gpu=...`` right after, and prints one line per device and field.
Identity fields and memory totals must match exactly; readings that move from one
instant to the next (power, clocks, temperature, utilization, memory in use) must agree
within a tolerance.

Where PyTorch sees a GPU, a second pass starts a process that holds 4 GiB of GPU memory and
keeps the GPU busy, runs the exporter with ``--collector.gpu.process-memory`` watching that
pid, compares its per-process memory with ``nvidia-smi --query-compute-apps``, then kills
the holder and checks that its series go away, that the memory in use falls, and that the
collectors keep succeeding. The exit status is the number of mismatches.
"""

from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

MIB = 2**20
# nvidia-smi field -> (exporter metric, labels beyond gpu/uuid, scale to nvidia-smi's unit,
# tolerance in nvidia-smi's unit; None: exact)
READINGS = {
    "memory.total": ("inferwatch_gpu_memory_total_bytes", {}, 1 / MIB, 1),
    "memory.reserved": ("inferwatch_gpu_memory_reserved_bytes", {}, 1 / MIB, 1),
    "memory.used": ("inferwatch_gpu_memory_used_bytes", {}, 1 / MIB, 64),
    "temperature.gpu": ("inferwatch_gpu_temperature_celsius", {}, 1, 3),
    "power.draw": ("inferwatch_gpu_power_watts", {}, 1, 25),
    "enforced.power.limit": ("inferwatch_gpu_power_limit_watts", {}, 1, 0.5),
    "clocks.sm": ("inferwatch_gpu_clock_hertz", {"clock": "sm"}, 1e-6, 300),
    "clocks.mem": ("inferwatch_gpu_clock_hertz", {"clock": "memory"}, 1e-6, 300),
    "utilization.gpu": ("inferwatch_gpu_utilization_ratio", {}, 100, 30),
    "utilization.memory": ("inferwatch_gpu_memory_utilization_ratio", {}, 100, 30),
}
IDENTITY = ("uuid", "name", "driver_version", "pci.bus_id")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> str:
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                return r.read().decode()
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the exporter did not answer on /metrics")


def nvidia_smi() -> list[dict[str, str]]:
    fields = [*IDENTITY, *READINGS]
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}",
                              "--format=csv,noheader,nounits"], check=True, text=True,
                             capture_output=True).stdout
    except FileNotFoundError:
        raise SystemExit("nvidia-smi not found: run this on a host with NVIDIA GPUs") from None
    return [dict(zip(fields, (v.strip() for v in row), strict=True))
            for row in csv.reader(io.StringIO(out)) if row]


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return series


def start_exporter(*flags: str) -> tuple[subprocess.Popen, int]:
    exporter = os.environ.get("INFERWATCH_EXPORTER") or Path(sys.executable).with_name(
        "inferwatch-exporter")
    port = free_port()
    process = subprocess.Popen([str(exporter), f"--web.listen-address=127.0.0.1:{port}",
                                *flags], stderr=subprocess.PIPE, text=True)
    return process, port


def main() -> int:
    process, port = start_exporter("--no-collector.process")
    try:
        scrape(port)  # the first scrape registers for events and fills the caches
        text = scrape(port)
        smi = nvidia_smi()
    finally:
        process.terminate()
        log = process.communicate(timeout=30)[1]
    series = parse(text)
    info = {dict(labels)["uuid"]: dict(labels) for (name, labels) in series
            if name == "inferwatch_gpu_info"}
    print(f"exporter log:\n{log}")
    print(f"{'uuid':<44} {'field':<22} {'nvidia-smi':>16} {'exporter':>16}  verdict")
    bad = 0

    def report(uuid: str, field: str, want: object, got: object, ok: bool) -> None:
        nonlocal bad
        bad += not ok
        print(f"{uuid:<44} {field:<22} {want!s:>16} {got!s:>16}  {'ok' if ok else 'DIFF'}")

    for gpu in smi:
        uuid = gpu["uuid"]
        labels = info.get(uuid)
        if labels is None:
            report(uuid, "inferwatch_gpu_info", "present", "missing", False)
            continue
        for field, label in (("name", "name"), ("driver_version", "driver_version"),
                             ("pci.bus_id", "pci_bus_id")):
            report(uuid, field, gpu[field], labels[label],
                   gpu[field].lower() == labels[label].lower())
        base = {"gpu": labels["gpu"], "uuid": uuid}
        for field, (metric, extra, scale, tolerance) in READINGS.items():
            want = gpu[field]
            got = series.get((metric, frozenset({**base, **extra}.items())))
            if want in ("[N/A]", "[Not Supported]", "N/A"):
                report(uuid, field, want, got, got is None)
                continue
            if got is None:
                report(uuid, field, want, "missing", False)
                continue
            got_scaled = got * scale
            report(uuid, field, want, f"{got_scaled:.6g}",
                   abs(got_scaled - float(want)) <= tolerance)
    devices = series.get(("inferwatch_gpu_devices", frozenset()))
    report("-", "device count", len(smi), devices, devices == len(smi))
    success = series.get(("inferwatch_exporter_collector_success",
                          frozenset({"collector": "gpu"}.items())))
    report("-", "collector_success", 1, success, success == 1)
    errors = {k: v for k, v in series.items() if k[0] == "inferwatch_gpu_nvml_errors_total"}
    report("-", "nvml errors", 0, len(errors), not errors)
    holder_check(report)
    print(f"{bad} mismatches; nvidia-ml-py from {os.path.dirname(sys.executable)}")
    return bad


HOLD_BYTES = 4 << 30
# Holds HOLD_BYTES on GPU 0 and keeps the GPU busy with matrix products until killed.
HOLDER = f"""
import time, torch
held = torch.empty({HOLD_BYTES}, dtype=torch.uint8, device="cuda")
held.fill_(1)
a = torch.randn(4096, 4096, device="cuda")
torch.cuda.synchronize()
print("ready", flush=True)
while True:
    for _ in range(50):
        a = (a @ a).clamp_(-1, 1)
    torch.cuda.synchronize()
"""


def compute_apps() -> dict[int, float]:
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                          "--format=csv,noheader,nounits"], check=True, text=True,
                         capture_output=True).stdout
    return {int(row[0]): float(row[1]) for row in csv.reader(io.StringIO(out)) if row}


def holder_check(report) -> None:
    """Per-process GPU memory against nvidia-smi, then the holder killed; ``report`` counts."""
    try:
        import torch
    except ImportError:
        print("holder check skipped: PyTorch is not installed")
        return
    if not torch.cuda.is_available():
        print("holder check skipped: PyTorch sees no GPU")
        return
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True)
    process = None
    try:
        if holder.stdout.readline().strip() != "ready":
            report("-", "holder started", "ready", "failed", False)
            return
        process, port = start_exporter("--collector.gpu.process-memory",
                                       f"--process.pid={holder.pid}", "--no-process.children")
        scrape(port)
        time.sleep(2)  # utilization is averaged over the driver's last sample period
        series = parse(scrape(port))
        apps = compute_apps()
        pid = str(holder.pid)
        held = {dict(labels)["gpu"]: value for (name, labels), value in series.items()
                if name == "inferwatch_gpu_process_memory_bytes" and dict(labels)["pid"] == pid}
        want = apps.get(holder.pid)
        got = sum(held.values()) / MIB if held else None
        ok = want is not None and got is not None and abs(got - want) <= 2
        report(pid, "process memory MiB", want, got, ok)
        ok = got is not None and got * MIB >= HOLD_BYTES
        report(pid, "holds >= 4 GiB", HOLD_BYTES // MIB, got, ok)
        names = {dict(labels)["process"] for (name, labels) in series
                 if name == "inferwatch_gpu_process_memory_bytes" and dict(labels)["pid"] == pid}
        # NVML names a process by its program's path
        named = any(os.path.basename(n).startswith("python") for n in names)
        report(pid, "process name", "*/python*", names, named)
        rss = next(
            (v for (n, labels), v in series.items()
             if n == "inferwatch_process_resident_memory_bytes" and dict(labels)["pid"] == pid),
            None)
        report(pid, "process collector rss", "present", rss, rss is not None)
        busy = max((v for (n, _), v in series.items()
                    if n == "inferwatch_gpu_utilization_ratio"), default=None)
        report("-", "utilization under load", ">= 0.5", busy, busy is not None and busy >= 0.5)
        used_before = sum(v for (n, _), v in series.items()
                          if n == "inferwatch_gpu_memory_used_bytes")

        holder.kill()
        holder.wait(timeout=30)
        deadline = time.monotonic() + 60
        while holder.pid in compute_apps() and time.monotonic() < deadline:
            time.sleep(0.5)
        report(pid, "gone from nvidia-smi", True, holder.pid not in compute_apps(),
               holder.pid not in compute_apps())
        series = parse(scrape(port))
        left = [labels for (name, labels) in series
                if name in ("inferwatch_gpu_process_memory_bytes",
                            "inferwatch_process_resident_memory_bytes")
                and dict(labels).get("pid") == pid]
        report(pid, "series after kill", 0, len(left), not left)
        used_after = sum(v for (n, _), v in series.items()
                         if n == "inferwatch_gpu_memory_used_bytes")
        fell = (used_before - used_after) / MIB
        report("-", "memory used fell MiB", f">= {HOLD_BYTES // MIB - 64}", f"{fell:.0f}",
               fell >= HOLD_BYTES // MIB - 64)
        for collector in ("gpu", "process"):
            success = series.get(("inferwatch_exporter_collector_success",
                                  frozenset({"collector": collector}.items())))
            report("-", f"{collector} success after kill", 1, success, success == 1)
    finally:
        if holder.poll() is None:
            holder.kill()
        if process is not None:
            process.terminate()
            print(f"exporter log (holder pass):\n{process.communicate(timeout=30)[1]}")


if __name__ == "__main__":
    sys.exit(main())
