"""Every module's doctests run: the examples in the docstrings are kept true."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import inferwatch

MODULES = sorted(info.name for info in pkgutil.walk_packages(inferwatch.__path__,
                                                                 prefix="inferwatch."))


def test_every_module_is_found():
    assert {"inferwatch.core.render", "inferwatch.serving.middleware",
            "inferwatch.standalone.cli", "inferwatch.events.jsonl"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False,
                             report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
