"""Helpers for the tests that hold a drain's fold to the general path: run a drain with the
fold and with it taken out, and watch which drains a fold took."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from test_outcomes_array_rows import _assert_same_samples


def as_the_general_path(monkeypatch: pytest.MonkeyPatch, owner: object, name: str,
                        judged: Callable[[], tuple[dict, object]],
                        replacement: Callable = lambda results: results) -> None:
    """`judged()` (the series and the outcome cache's entries after some drains) is the
    same with ``owner.name`` as it is and with `replacement` in its place (a reader that
    hands every result on as it is, or a fold that takes none)."""
    folded = judged()
    with monkeypatch.context() as patched:
        patched.setattr(owner, name, replacement)
        alone = judged()
    _assert_same_samples(folded[0], alone[0])
    assert folded[1] == alone[1]


def watched(monkeypatch: pytest.MonkeyPatch, owner: object, name: str,
            took: Callable[[object], bool] = bool) -> list[bool]:
    """Whether ``owner.name`` took each drain it was offered, as the drains go: `took`
    reads its return (a fold's True, or rows rather than None). A test of a fold that
    never ran would prove nothing."""
    taken: list[bool] = []
    fold = getattr(owner, name)

    def watching(*args, **kwargs):
        found = fold(*args, **kwargs)
        taken.append(took(found))
        return found

    monkeypatch.setattr(owner, name, watching)
    return taken
