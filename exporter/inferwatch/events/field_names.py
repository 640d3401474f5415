"""How a stored key and a configured field name are told to be the same field.

Redaction fails closed: a key spelled apart from the configured path only by what a
reader cannot tell apart (case, width, invisible characters, surrounding white space) is
that field. Apart from ``redact`` because the readers of serving bodies
(``request_bodies``) compare names by the same rule.
"""

from __future__ import annotations

import unicodedata

_INVISIBLE = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0"
    + "".join(map(chr, range(0x180B, 0x1810))) + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xE0100, 0xE01F0))))
# Names already folded (read directly where a call per key would cost: redact._keys_naming).
FOLDED: dict[str, str] = {}
_FOLDED_MAX = 4096


def fold_name(name: str) -> str:
    """The field `name` spells to a reader: case, width, invisible characters and surrounding
    white space set aside, so ``SSN``, ``"ssn "``, full-width ``"\\uff53\\uff53\\uff4e"``,
    ``"\\ufeffssn"`` (a CSV header read without ``utf-8-sig``) and ``"s\\u200bsn"`` all
    name ``ssn``.

    >>> fold_name(" \\uff33s\u200bN\ufeff")
    'ssn'
    """
    folded = FOLDED.get(name)
    if folded is None:
        if name.isascii():
            folded = name.strip().lower()
        else:
            text = "".join(c for c in unicodedata.normalize("NFKC", name)
                           if c not in _INVISIBLE and unicodedata.category(c) != "Cf")
            folded = unicodedata.normalize("NFKC", text.casefold()).strip()
        if len(FOLDED) >= _FOLDED_MAX:  # keys are the user's data: the cache stays bounded
            FOLDED.clear()
        FOLDED[name] = folded
    return folded


def same_field(key: str, wanted: str) -> bool:
    """Whether the stored `key` names the field `wanted`; redaction fails closed, so a key
    spelled apart from the configured path only by what a reader cannot tell apart is it."""
    return key == wanted or fold_name(key) == fold_name(wanted)


def names_key(node: dict, head: str) -> bool:
    """Whether `head` names a key of `node`, or the first part of a dotted one.

    >>> names_key({"User.ssn": 1}, "user"), names_key({"age": 1}, "ssn")
    (True, False)
    """
    return any(same_field(key, head) or
               ("." in key and same_field(key.split(".", 1)[0], head))
               for key in node if isinstance(key, str))
