"""Column names given by repeated, comma-separated CLI flags (``--categorical``,
``--ignore``, ``--predictions-column``), checked against a data file's header: used by
``inferwatch profile`` and ``inferwatch report``."""

from __future__ import annotations

import re

from inferwatch.quality.data_files import ProfileError

_UNESCAPED_COMMA = re.compile(r"(?<!\\),")


def split_columns(values: list[str], known: list[str] | None = None,
                  flag: str = "") -> list[str]:
    r"""Column names from repeated, comma-separated flag values. A column whose name holds
    a comma is named by the whole value when that is its name (``--categorical "a,b"``), or
    with the comma escaped (``a\,b``), which also serves a list naming it beside others.

    >>> split_columns(["a,b", "c"]), split_columns(["x\\,y,z"])
    (['a', 'b', 'c'], ['x,y', 'z'])
    >>> split_columns(["a,b"], known=["a,b", "a"])
    ['a,b']
    """
    names: list[str] = []
    for value in values:
        whole = value.strip()
        parts = [n.strip().replace("\\,", ",") for n in _UNESCAPED_COMMA.split(value)]
        if known is not None and "," in whole and whole in known:
            parts = [n for n in parts if n]
            if all(n in known for n in parts):
                raise ProfileError(
                    f"{flag} {whole!r} names a column, and also the columns {parts}: write"
                    f" {whole.replace(',', chr(92) + ',')!r} for the one column, or give the"
                    f" others as separate {flag} flags")
            names.append(whole)
            continue
        if not whole:
            raise ProfileError(f"{flag} is empty; give a column name, or leave the flag out")
        if known is not None and "" in parts:
            # `--ignore "id,,$EXTRA"`: a name left out, which would silently profile the
            # column it was meant to name. Only against the file's names: "a," may be one.
            raise ProfileError(f"{flag} {whole!r} has an empty column name between commas;"
                               " remove the extra comma, or name the column")
        names.extend(n for n in parts if n)
    return names


def column_list(values: list[str], known: list[str], flag: str) -> list[str]:
    """The columns `values` name, each once, in order; a :class:`ProfileError` naming
    `flag` for a column that is not in `known`.

    >>> column_list(["b,a", "b"], ["a", "b", "c"], "--ignore")
    ['b', 'a']
    """
    names = split_columns(values, known, flag)
    unknown = [n for n in names if n not in set(known)]
    if unknown:
        # The file's names as repr: a header may hold line breaks or terminal escapes.
        shown = ", ".join(map(repr, known[:20])) + (", ..." if len(known) > 20 else "")
        raise ProfileError(f"unknown column {unknown[0]!r} in {flag} (columns: {shown})")
    return list(dict.fromkeys(names))
