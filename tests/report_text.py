"""A pytest plugin (loaded by conftest.py) that keeps every test report sendable between
pytest-xdist's processes.

xdist sends each report from its worker to the main process as UTF-8. A report holding a
lone surrogate (a hypothesis-drawn label in a failed assertion, or in captured output)
cannot be encoded: the main process stops with an INTERNALERROR, the failure is never
counted, and the run exits 0. Such text is written here with the surrogate escaped
(``\\udc80``), before the report leaves the worker.
"""

from __future__ import annotations

import pytest


def utf8_safe(text: str) -> str:
    """`text`, with what UTF-8 cannot encode written as a backslash escape.

    >>> utf8_safe("a\\udc80b"), utf8_safe("caf\\u00e9")
    ('a\\\\udc80b', 'café')
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        report.longrepr = (longrepr[0], longrepr[1], utf8_safe(str(longrepr[2])))
    elif longrepr is not None:
        text = str(longrepr)
        if utf8_safe(text) is not text:
            report.longrepr = utf8_safe(text)  # the same report, as plain text
    report.sections = [(utf8_safe(title), utf8_safe(content))
                       for title, content in report.sections]
