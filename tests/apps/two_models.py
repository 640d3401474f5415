"""Two models with the same code path and different speeds, for the per-model objectives test.

``python two_models.py PORT`` serves /metrics on PORT and keeps calling both models:
``scorer`` answers in about 0.1 s, ``ranker`` in about 0.7 s. Run until killed.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import inferwatch


def model(name: str, seconds: float) -> Callable[[float], float]:
    @inferwatch.instrument(name=name, version="1")
    def predict(x: float) -> float:
        time.sleep(seconds)
        return x

    return predict


def keep_calling(predict: Callable[[float], float], stop: threading.Event) -> None:
    while not stop.is_set():
        predict(1.0)


def main() -> None:
    inferwatch.serve(port=int(sys.argv[1]), addr="127.0.0.1")
    stop = threading.Event()
    for name, seconds in (("scorer", 0.1), ("ranker", 0.7)):
        threading.Thread(target=keep_calling, args=(model(name, seconds), stop),
                         daemon=True).start()
    stop.wait()


if __name__ == "__main__":
    main()
