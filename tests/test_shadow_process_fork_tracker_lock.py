"""A worker forked while its parent's shadow thread starts a child (gunicorn --preload with a
warm-up call at import) must still run its own process-mode shadow.

Starting a spawn child holds multiprocessing's resource-tracker lock; a fork at that moment
handed the worker the lock held by a thread it does not have, and the worker's first shadow
child waited for it for good: none of its calls was ever compared. The script below holds
that lock in a thread as ``Process.start()`` does, forks, and has the child run a
process-mode shadow to the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent("""
    import multiprocessing.resource_tracker as resource_tracker
    import os
    import sys
    import threading
    import time

    import numpy as np

    import inferwatch
    from inferwatch.core import shadow_process  # noqa: F401  (as a worker's app has it)
    from inferwatch.core.registry import Registry
    from shadow_models import Summing

    held, release = threading.Event(), threading.Event()

    def starting_a_child():  # what Process.start() holds while it starts the tracker
        with resource_tracker._resource_tracker._lock:
            held.set()
            release.wait()

    threading.Thread(target=starting_a_child, daemon=True).start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        registry = Registry(drain_interval=3600)
        champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
        handle = inferwatch.shadow(champion, Summing(), version="2", mode="process",
                                   sample=1.0, timeout=60.0, registry=registry)
        for _ in range(3):
            champion.predict(np.ones((2, 3)))
        answered = handle.flush(60)
        registry.drain()
        compared = handle.monitor.state.counters.get("inferwatch_shadow_compared_total", {})
        handle.close()
        print("child", answered, sum(compared.values()), flush=True)
        os._exit(0 if answered and sum(compared.values()) == 3 else 1)
    release.set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            sys.exit(os.waitstatus_to_exitcode(status))
        time.sleep(0.1)
    os.kill(pid, 9)
    print("child hung", flush=True)
    sys.exit(3)
""")


def test_a_worker_forked_while_a_shadow_child_starts_runs_its_own_shadow(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True,
                          text=True, timeout=150,
                          env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "child True 3" in done.stdout
