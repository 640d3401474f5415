"""Prometheus regexes (Go's RE2) checked and matched with Python's ``re``.

The generator decides with Python which ``models:`` entries overlap, while Prometheus
matches them with RE2. Where the two engines read a pattern differently, a model ends up
judged by two alert copies, or a working entry is refused, or rules pass validation and
then fail to load. So a pattern is translated into the Python regex that matches the same
names, and syntax without a faithful translation is refused:

- RE2 lacks possessive repeats, atomic groups, lookaround, back-references, conditionals,
  comments and the flags a, L, u, x; Python accepts them all, so they are refused.
- RE2's ``\\w \\d \\s \\b`` and POSIX classes (``[[:alpha:]]``) are ASCII; Python's are
  Unicode (or, for ``[[:alpha:]]``, a different set), so they become explicit ASCII sets.
  Compiling with ``re.ASCII`` instead would also make ``(?i)`` fold ASCII letters only,
  where RE2 folds every letter.
- RE2 reads ``{,n}`` and numbers with leading zeros in braces as literal text, and writes
  ``\\z``, ``\\x{...}`` and ``\\Q...\\E`` where Python has other spellings: translated.
- Unicode classes (``\\p{Greek}``) have no Python counterpart: refused.

>>> matches("[[:alpha:]]+", "fraud"), matches(r"mod\\w+", "modèle")
(True, False)
>>> python_regex("(?>fr).*")
Traceback (most recent call last):
...
inferwatch.generate.re2.Unsupported: uses an atomic group, which Prometheus regexes (RE2) lack
"""

from __future__ import annotations

import functools
import re
import warnings

_MAX_CODE_POINT = 0x10FFFF
# RE2 refuses a repeat count above this.
_MAX_REPEAT = 1000


class Unsupported(ValueError):
    """A pattern RE2 refuses, or one Python cannot be made to read as RE2 does."""


def _ranges(*pairs: str) -> tuple[tuple[int, int], ...]:
    """Code point ranges from two-character strings (first and last character)."""
    return tuple((ord(pair[0]), ord(pair[-1])) for pair in pairs)


_PERL_CLASSES = {"d": _ranges("09"), "s": _ranges("\t\n", "\f\r", " "),
                 "w": _ranges("09", "AZ", "az", "_")}
_POSIX_CLASSES = {
    "alnum": _ranges("09", "AZ", "az"), "alpha": _ranges("AZ", "az"),
    "ascii": _ranges("\x00\x7f"), "blank": _ranges("\t", " "),
    "cntrl": _ranges("\x00\x1f", "\x7f"), "digit": _ranges("09"), "graph": _ranges("!~"),
    "lower": _ranges("az"), "print": _ranges(" ~"), "punct": _ranges("!/", ":@", "[`", "{~"),
    "space": _ranges("\t\r", " "), "upper": _ranges("AZ"), "word": _ranges("09", "AZ", "az", "_"),
    "xdigit": _ranges("09", "AF", "af"),
}
_SAME_ESCAPES = set("aftnrv")
_REPEAT = re.compile(r"\{(\d*)(?:,(\d*))?\}")
_FLAGS = re.compile(r"\(\?([A-Za-z]*)(?:-([A-Za-z]*))?([:)])")
_GROUP_NAME = re.compile(r"\(\?P<([^>]*)>")
_REFUSED_GROUPS = {
    "(?=": "lookaround", "(?!": "lookaround", "(?<=": "lookaround", "(?<!": "lookaround",
    "(?>": "an atomic group", "(?P=": "a back-reference", "(?(": "a conditional group",
    "(?#": "a comment group",
}


def _set_text(ranges: tuple[tuple[int, int], ...], negated: bool = False) -> str:
    """Ranges as the inside of a Python character class (the complement when `negated`)."""
    if negated:
        ranges = _complement(ranges)
    return "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in ranges)


def _complement(ranges: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    gaps, start = [], 0
    for low, high in sorted(ranges):
        if low > start:
            gaps.append((start, low - 1))
        start = max(start, high + 1)
    if start <= _MAX_CODE_POINT:
        gaps.append((start, _MAX_CODE_POINT))
    return tuple(gaps)


def _escape(pattern: str, i: int, in_class: bool) -> tuple[str, int]:
    """The Python spelling of the escape at `i`, and where the pattern goes on."""
    if i + 1 >= len(pattern):
        return "\\", i + 1  # Python refuses a trailing backslash, as RE2 does
    c = pattern[i + 1]
    if c.lower() in _PERL_CLASSES:
        text = _set_text(_PERL_CLASSES[c.lower()], negated=c.isupper())
        return (text if in_class else f"[{text}]"), i + 2
    if c == "x" and pattern.startswith("{", i + 2):
        return _braced_hex(pattern, i)
    if c == "0" or c in _SAME_ESCAPES or c == "x" or (c.isascii() and not c.isalnum()):
        return f"\\{c}", i + 2
    if not in_class and c == "b":
        return "(?a:\\b)", i + 2  # RE2's word boundary is ASCII
    if not in_class and c == "B":
        # Python's \B never matches an empty string, RE2's does.
        return "(?:(?a:\\B)|\\A\\Z)", i + 2
    if not in_class and c == "A":
        return "\\A", i + 2
    if not in_class and c == "z":
        return "\\Z", i + 2
    if not in_class and c == "Q":
        end = pattern.find("\\E", i + 2)
        if end < 0:
            # Prometheus wraps the regex in ^(?:...)$, which an open \Q would swallow.
            raise Unsupported("opens \\Q without closing it with \\E")
        return re.escape(pattern[i + 2:end]), end + 2
    if re.compile(r"[1-7][0-7]{2}").match(pattern, i + 1):
        return pattern[i:i + 4], i + 4  # three octal digits: a character to both
    if c in "123456789":
        raise Unsupported("uses a back-reference, which Prometheus regexes (RE2) lack")
    if c in "pP":
        raise Unsupported(f"uses the Unicode class \\{c}, which inferwatch cannot check "
                          f"(list the names, or use ASCII classes)")
    raise Unsupported(f"uses the escape \\{c}, which Prometheus regexes (RE2) lack or read "
                      f"differently")


def _braced_hex(pattern: str, i: int) -> tuple[str, int]:
    match = re.compile(r"\\x\{([0-9A-Fa-f]{1,8})\}").match(pattern, i)
    if not match or int(match.group(1), 16) > _MAX_CODE_POINT:
        raise Unsupported("uses an invalid \\x{...} escape")
    return f"\\U{int(match.group(1), 16):08x}", match.end()


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    """The Python spelling of the character class opening at `i`."""
    out, j = ["["], i + 1
    if pattern.startswith("^", j):
        out.append("^")
        j += 1
    first = True
    while j < len(pattern):
        c = pattern[j]
        if c == "]" and not first:
            return "".join(out) + "]", j + 1
        first = False
        if pattern.startswith("[:", j) and pattern.find(":]", j + 2) >= 0:
            text, j = _posix_class(pattern, j)
        elif c == "\\":
            text, j = _escape(pattern, j, in_class=True)
        else:
            # RE2 reads these literally; Python warns it may one day read them as set syntax.
            text, j = ("\\" + c if c in "[]&~|" else c), j + 1
        out.append(text)
    return "".join(out), j  # unterminated: Python refuses it, as RE2 does


def _posix_class(pattern: str, j: int) -> tuple[str, int]:
    # Like RE2, the name runs to the next ":]", wherever it is.
    end = pattern.find(":]", j + 2)
    name = pattern[j + 2:end]
    negated = name.startswith("^")
    ranges = _POSIX_CLASSES.get(name[1:] if negated else name)
    if ranges is None:
        raise Unsupported(f"uses the unknown character class [:{name}:]")
    return _set_text(ranges, negated), end + 2


def _group(pattern: str, i: int) -> tuple[str, int]:
    """The Python spelling of the group opening at `i`."""
    if not pattern.startswith("(?", i):
        return "(", i + 1
    for opening, what in _REFUSED_GROUPS.items():
        if pattern.startswith(opening, i):
            raise Unsupported(f"uses {what}, which Prometheus regexes (RE2) lack")
    name = _GROUP_NAME.match(pattern, i)
    if name:
        if not re.fullmatch(r"[A-Za-z0-9_]+", name.group(1)):
            raise Unsupported(f"has an invalid group name {name.group(1)!r}")
        return name.group(0), name.end()
    flags = _FLAGS.match(pattern, i)
    if not flags:
        return "(?", i + 2  # Python refuses the rest, as RE2 does
    unknown = set(flags.group(1) + (flags.group(2) or "")) - set("ims")
    if unknown:
        raise Unsupported(f"uses the flag {''.join(sorted(unknown))}; only i, m and s mean "
                          f"the same in Prometheus regexes (RE2) and Python")
    if flags.group(3) == ")" and i > 0:
        # Python only takes flags for the whole pattern at its start.
        raise Unsupported("sets flags after the start; write (?i:...) around that part")
    return flags.group(0), flags.end()


def _repeat(pattern: str, i: int) -> tuple[str, int]:
    """The Python spelling of the braces at `i`: a repeat, or literal text as RE2 reads it."""
    match = _REPEAT.match(pattern, i)
    if not match:
        return "\\{", i + 1
    low, high = match.group(1), match.group(2) or ""
    if not low or any(len(n) > 1 and n.startswith("0") for n in (low, high)):
        return re.escape(match.group(0)), match.end()  # RE2: no repeat, literal text
    if any(len(n) > 4 or int(n) > _MAX_REPEAT for n in (low, high) if n):
        raise Unsupported(f"repeats more than {_MAX_REPEAT} times, which Prometheus regexes "
                          f"(RE2) refuse")
    return match.group(0), match.end()


_TOKENS = {"\\": lambda p, i: _escape(p, i, in_class=False), "[": _char_class, "(": _group,
           "{": _repeat}


def _translate(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        token = _TOKENS.get(pattern[i])
        text, after = token(pattern, i) if token else (pattern[i], i + 1)
        repeat = pattern[i] in "*+?" or (pattern[i] == "{" and not text.startswith("\\"))
        if repeat and pattern.startswith("+", after):
            raise Unsupported("uses a possessive repeat (*+, ++, ?+), which Prometheus regexes "
                              "(RE2) lack")
        out.append(text)
        i = after
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def python_regex(pattern: str) -> re.Pattern[str]:
    """The Python regex matching what RE2 matches with `pattern`.

    Compiled with DOTALL: Prometheus 3 wraps every regex in ``(?s:...)``, so ``.`` also
    matches a newline (Prometheus 2 does not, which only matters for names holding one).
    Raises Unsupported naming the syntax RE2 refuses or Python cannot be made to follow.
    """
    text = _translate(pattern)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return re.compile(text, re.DOTALL)
        except re.error as exc:
            raise Unsupported(f"is not a valid regex ({exc.msg})") from None
        except RecursionError:
            raise Unsupported("nests groups too deeply") from None


def matches(pattern: str, name: str) -> bool:
    """Whether Prometheus' anchored ``=~`` with `pattern` matches the label value `name`."""
    return python_regex(pattern).fullmatch(name) is not None
