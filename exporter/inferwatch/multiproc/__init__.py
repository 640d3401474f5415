"""Multi-worker mode: each worker publishes a snapshot file, a scrape merges them.

>>> import inferwatch.multiproc
>>> inferwatch.multiproc.ENV_VAR
'INFERWATCH_MULTIPROC_DIR'
"""

from inferwatch.multiproc.worker import (
    ENV_VAR,
    MultiprocError,
    Publisher,
    attach,
    check_directory,
    clear_directory,
    directory_from_env,
    shutdown,
)

__all__ = [
    "ENV_VAR",
    "MultiprocError",
    "Publisher",
    "attach",
    "check_directory",
    "clear_directory",
    "directory_from_env",
    "shutdown",
]
