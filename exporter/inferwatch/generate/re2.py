"""Prometheus regexes (Go's RE2) checked and matched with Python's ``re``.

The generator decides with Python which ``models:`` entries overlap, while Prometheus
matches them with RE2 (Go's regexp/syntax, with Perl flags). Where the two engines read a
pattern differently, a model ends up judged by two alert copies, or a working entry is
refused, or rules pass validation and then fail to load. So a pattern is translated into the
Python regex that matches the same names, and syntax without a faithful translation is
refused:

- RE2 lacks possessive repeats, atomic groups, lookaround, back-references, conditionals,
  comments and flags other than i, m, s and U; Python accepts most of them, so they are
  refused.
- RE2's ``\\w \\d \\s \\b`` and POSIX classes (``[[:alpha:]]``) are ASCII; Python's are
  Unicode (or, for ``[[:alpha:]]``, a different set), so they become explicit ASCII sets.
  Compiling with ``re.ASCII`` instead would also make ``(?i)`` fold ASCII letters only,
  where RE2 folds every letter. A negated class (``\\W``, ``\\PL``, ``[[:^alpha:]]``) becomes
  a negated Python set, as RE2 folds the case of a class before it negates it.
- Unicode classes (``\\pL``, ``\\p{Greek}``) become the code points Go lists under the name,
  for the characters Python's ``unicodedata`` knows. Names only newer Go releases know are
  refused, as Prometheus releases built with older ones refuse them.
- RE2 keeps flags set by ``(?i)`` to the end of the enclosing group, across ``|``; Python
  takes them only at the start, so they become a group of their own up to there. Its U flag
  (lazy repeats) changes where a match ends, not which names match: left out.
- RE2 reads ``{,n}`` and numbers with leading zeros in braces as literal text, ``\\12`` as an
  octal escape, and writes ``\\z``, ``\\x{...}`` and ``\\Q...\\E`` where Python has other
  spellings: translated.
- RE2 refuses more than 1000 repeats, also when nested repeats multiply past it: refused.

>>> matches("[[:alpha:]]+", "fraud"), matches(r"mod\\w+", "modèle")
(True, False)
>>> matches(r"\\p{Greek}+", "λόγος"), matches("a(?i)b", "aB"), matches(r"\\101", "A")
(True, True, True)
>>> python_regex("(?>fr).*")
Traceback (most recent call last):
...
inferwatch.generate.re2.Unsupported: uses an atomic group, which Prometheus regexes (RE2) lack
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
import warnings
from collections.abc import Iterable

from inferwatch.generate.re2_scripts import SCRIPT_RUNS, SCRIPTS, decode_runs

_MAX_CODE_POINT = 0x10FFFF
# RE2 refuses a repeat count above this, and nested repeats whose counts multiply past it.
_MAX_REPEAT = 1000

_Ranges = tuple[tuple[int, int], ...]


class Unsupported(ValueError):
    """A pattern RE2 refuses, or one Python cannot be made to read as RE2 does."""


def _ranges(*pairs: str) -> _Ranges:
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
# The general categories Go's \p{...} knows in every release Prometheus 2.45 and later are built
# with (Go 1.25 adds aliases such as Letter, and LC and Cn, which older releases refuse). The
# scripts are re2_scripts.SCRIPTS.
_CATEGORIES = frozenset({"C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc",
                        "Me", "Mn", "N", "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po",
                        "Ps", "S", "Sc", "Sk", "Sm", "So", "Z", "Zl", "Zp", "Zs"})
_SAME_ESCAPES = set("aftnrv")
# RE2 reads two or three octal digits, or a 0 and up to two more; a lone 1-7 is a back-reference.
_OCTAL = re.compile(r"\\(?:0[0-7]{0,2}|[1-7][0-7]{1,2})")
# ASCII digits only: RE2 reads braces holding other digits as literal text.
_REPEAT = re.compile(r"\{([0-9]*)(?:,([0-9]*))?\}")
_HEX = re.compile(r"\\x(?:\{([0-9A-Fa-f]+)\}|([0-9A-Fa-f]{2}))")
_GROUP_NAME = re.compile(r"\(\?P<([^>]*)>")
_FLAG_GROUP = re.compile(r"\(\?([ims]*)(?:-([ims]*))?:")
_REFUSED_GROUPS = {
    "(?=": "lookaround", "(?!": "lookaround", "(?<=": "lookaround", "(?<!": "lookaround",
    "(?>": "an atomic group", "(?P=": "a back-reference", "(?(": "a conditional group",
    "(?#": "a comment group",
}


def _set_text(ranges: _Ranges) -> str:
    """Ranges as the inside of a Python character class."""
    return "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in ranges)


def _merged(ranges: Iterable[tuple[int, int]]) -> _Ranges:
    """Sorted ranges with the touching ones joined."""
    out: list[tuple[int, int]] = []
    for low, high in ranges:
        if out and low <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(high, out[-1][1]))
        else:
            out.append((low, high))
    return tuple(out)


def _intersection(first: _Ranges, second: _Ranges) -> _Ranges:
    """The code points in both sorted, disjoint range lists."""
    out, i, j = [], 0, 0
    while i < len(first) and j < len(second):
        low, high = max(first[i][0], second[j][0]), min(first[i][1], second[j][1])
        if low <= high:
            out.append((low, high))
        if first[i][1] < second[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _escape(pattern: str, i: int, in_class: bool) -> tuple[str, int]:
    """The Python spelling of the escape at `i`, and where the pattern goes on."""
    if i + 1 >= len(pattern):
        return "\\", i + 1  # Python refuses a trailing backslash, as RE2 does
    c = pattern[i + 1]
    class_escape = _class_escape(pattern, i)
    if class_escape:
        ranges, negated, after = class_escape
        if in_class:  # only the end of a range gets here
            raise Unsupported(f"ends a range with the class {pattern[i:after]}, which Prometheus "
                              f"regexes (RE2) refuse")
        return f"[{'^' if negated else ''}{_set_text(ranges)}]", after
    if c == "x":
        return _hex(pattern, i)
    octal = _OCTAL.match(pattern, i)
    if octal:
        # Python reads \12 as a back-reference and refuses \400: spelled as a code point.
        return f"\\U{int(octal.group(0)[1:], 8):08x}", octal.end()
    if c in _SAME_ESCAPES or (c.isascii() and not c.isalnum()):
        return f"\\{c}", i + 2
    if not in_class and c == "b":
        return "(?a:\\b)", i + 2  # RE2's word boundary is ASCII
    if not in_class and c == "B":
        # Python's \B never matches an empty string, RE2's does.
        return "(?:(?a:\\B)|\\A\\Z)", i + 2
    if not in_class and c == "A":
        return "(?:\\A)", i + 2  # grouped: RE2 takes a repeat of an anchor, Python refuses it
    if not in_class and c == "z":
        return "(?:\\Z)", i + 2
    if c in "1234567":
        raise Unsupported("uses a back-reference, which Prometheus regexes (RE2) lack")
    raise Unsupported(f"uses the escape \\{c}, which Prometheus regexes (RE2) lack or read "
                      f"differently")


def _class_escape(pattern: str, i: int) -> tuple[_Ranges, bool, int] | None:
    """The code points of the class escape at `i` (``\\d``, ``\\W``, ``\\pL``, ``\\p{Greek}``),
    whether it is negated, and where the pattern goes on; None for any other escape."""
    c = pattern[i + 1] if i + 1 < len(pattern) else ""
    if c.lower() in _PERL_CLASSES:
        return _PERL_CLASSES[c.lower()], c.isupper(), i + 2
    if c in ("p", "P"):
        return _unicode_class(pattern, i)
    return None


def _unicode_class(pattern: str, i: int) -> tuple[_Ranges, bool, int]:
    """The code points of the Unicode class at `i`, read as Go reads it: a one-letter name
    (``\\pL``) or one in braces (``\\p{Greek}``), negated by ``\\P`` or a leading ``^``."""
    negated = pattern[i + 1] == "P"
    if pattern.startswith("{", i + 2):
        end = pattern.find("}", i + 3)
        if end < 0:
            raise Unsupported(f"opens \\{pattern[i + 1]}{{ without closing it with }}")
        name, after = pattern[i + 3:end], end + 1
    elif i + 2 < len(pattern):
        name, after = pattern[i + 2], i + 3
    else:
        raise Unsupported(f"ends with \\{pattern[i + 1]} and no class name")
    if name.startswith("^"):  # \p{^Greek} is \P{Greek}
        negated, name = not negated, name[1:]
    if name != "Any" and name not in _CATEGORIES and name not in SCRIPTS:
        raise Unsupported(f"uses the unknown Unicode class {pattern[i:after]}; Prometheus "
                          f"regexes (RE2) know Any, the general categories (L, Lu, Nd, ...) and "
                          f"the scripts of Unicode 13.0 (Greek, Han, Latin, ...)")
    return _unicode_ranges(name), negated, after


@functools.cache
def _unicode_ranges(name: str) -> _Ranges:
    """The code points Go lists under the Unicode class `name`, as far as Python's
    ``unicodedata`` knows them: Go's tables follow Unicode 13.0 to 17.0 depending on the
    release, so only characters added since then can be read differently."""
    if name == "Any":
        return ((0, _MAX_CODE_POINT),)
    if name in _CATEGORIES:
        # A one-letter category joins its two-letter ones; Go lists no unassigned (Cn) under C.
        return _merged((first, last) for first, last, category in _category_runs()
                       if category == name or (category[0] == name and category != "Cn"))
    return _intersection(_script_ranges()[name], _assigned())


@functools.cache
def _category_runs() -> tuple[tuple[int, int, str], ...]:
    """Each run of code points with one general category: first, last and category."""
    runs: list[list] = []
    for code in range(_MAX_CODE_POINT + 1):
        category = unicodedata.category(chr(code))
        if runs and runs[-1][2] == category:
            runs[-1][1] = code
        else:
            runs.append([code, code, category])
    return tuple((first, last, category) for first, last, category in runs)


@functools.cache
def _assigned() -> _Ranges:
    """The code points Python's ``unicodedata`` knows."""
    return _merged((first, last) for first, last, category in _category_runs() if category != "Cn")


@functools.cache
def _script_ranges() -> dict[str, _Ranges]:
    """The code points of each of SCRIPTS, from SCRIPT_RUNS."""
    ranges: dict[str, list[tuple[int, int]]] = {name: [] for name in SCRIPTS}
    for first, last, script in decode_runs(SCRIPT_RUNS):
        if script:
            ranges[SCRIPTS[script - 1]].append((first, last))
    return {name: tuple(script_ranges) for name, script_ranges in ranges.items()}


def _hex(pattern: str, i: int) -> tuple[str, int]:
    """The character of the ``\\x41`` or ``\\x{e9}`` escape at `i`, and where the pattern goes
    on: one piece of output, so that a repeat after it takes all of it."""
    match = _HEX.match(pattern, i)
    if not match or int(match.group(1) or match.group(2), 16) > _MAX_CODE_POINT:
        raise Unsupported("uses an invalid \\x escape")
    return f"\\U{int(match.group(1) or match.group(2), 16):08x}", match.end()


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    """The Python spelling of the character class opening at `i`, read item by item as RE2
    reads it: a POSIX or escaped class, or a character or range of them."""
    negated = pattern.startswith("^", i + 1)
    j = i + 2 if negated else i + 1
    members: list[str] = []  # inside a Python set
    excluded: list[str] = []  # the negated classes in it (\D, \PL, [:^alpha:]), un-negated
    first = True
    while j < len(pattern) and (pattern[j] != "]" or first):
        first = False
        inner = _inner_class(pattern, j)
        if inner:
            ranges, inner_negated, j = inner
            (excluded if inner_negated else members).append(_set_text(ranges))
            continue
        low, j = _class_char(pattern, j)
        # [a-] holds a and -: a range needs a character after the -.
        if pattern.startswith("-", j) and j + 1 < len(pattern) and pattern[j + 1] != "]":
            high, j = _class_char(pattern, j + 1)
            low = f"{low}-{high}"
        members.append(low)
    if j >= len(pattern):
        return "[" + "".join(members), j  # unterminated: Python refuses it, as RE2 does
    return _class_text(members, excluded, negated), j + 1


def _inner_class(pattern: str, j: int) -> tuple[_Ranges, bool, int] | None:
    """The class inside a class at `j` (``[:alpha:]``, ``\\d``, ``\\pL``), if one starts there."""
    if pattern.startswith("[:", j) and pattern.find(":]", j + 2) >= 0:
        return _posix_class(pattern, j)
    if pattern.startswith("\\", j):
        return _class_escape(pattern, j)
    return None


def _class_char(pattern: str, j: int) -> tuple[str, int]:
    """One character of a class, as Python set syntax, and where the pattern goes on."""
    if pattern.startswith("\\", j):
        return _escape(pattern, j, in_class=True)
    # Escaped: RE2 reads [ ] & ~ | - ^ literally here, Python may read them as set syntax.
    return re.escape(pattern[j]), j + 1


def _class_text(members: list[str], excluded: list[str], negated: bool) -> str:
    """A class as Python spells it. Python sets cannot hold a negated class, so with one the
    class becomes a choice of sets, each negated class a negated set of its own."""
    if not excluded:
        return f"[{'^' if negated else ''}{''.join(members)}]"
    sets = ([f"[{''.join(members)}]"] if members else []) + [f"[^{text}]" for text in excluded]
    either = f"(?:{'|'.join(sets)})"
    return f"(?:(?!{either})(?s:.))" if negated else either


def _posix_class(pattern: str, j: int) -> tuple[_Ranges, bool, int]:
    # Like RE2, the name runs to the next ":]", wherever it is.
    end = pattern.find(":]", j + 2)
    name = pattern[j + 2:end]
    negated = name.startswith("^")
    ranges = _POSIX_CLASSES.get(name[1:] if negated else name)
    if ranges is None:
        raise Unsupported(f"uses the unknown character class [:{name}:]")
    return ranges, negated, end + 2


def _group(pattern: str, i: int) -> tuple[str, int, bool]:
    """The Python spelling of the group syntax at `i`, where the pattern goes on, and whether it
    opens a group: flags alone (``a(?i)b``) open none, and hold to the end of the enclosing
    group."""
    if not pattern.startswith("(?", i):
        return "(", i + 1, True
    for opening, what in _REFUSED_GROUPS.items():
        if pattern.startswith(opening, i):
            raise Unsupported(f"uses {what}, which Prometheus regexes (RE2) lack")
    if pattern.startswith("(?<", i):
        raise Unsupported("names a group with (?<name>...), which Prometheus releases built with "
                          "Go before 1.22 refuse; write (?P<name>...)")
    name = _GROUP_NAME.match(pattern, i)
    if name:
        if not re.fullmatch(r"[A-Za-z0-9_]+", name.group(1)):
            raise Unsupported(f"has an invalid group name {name.group(1)!r}")
        return name.group(0), name.end(), True
    on, off, end, after = _flags(pattern, i)
    return _python_flags(on, off, opens=end == ":"), after, end == ":"


def _flags(pattern: str, i: int) -> tuple[str, str, str, int]:
    """The flags the ``(?flags)`` or ``(?flags:`` at `i` turns on and off, the character that
    ends it and where the pattern goes on. As in Go: i, m, s and U, and at most one ``-``,
    with a flag after it (``(?)`` and ``(?:`` set none)."""
    on, off, negated = "", "", False
    for j in range(i + 2, len(pattern)):
        c = pattern[j]
        if c in "imsU":
            on, off = (on, off + c) if negated else (on + c, off)
        elif c == "-" and not negated:
            negated = True
        elif c in ":)" and not (negated and not off):
            return on, off, c, j + 1
        elif c in ":)-":
            raise Unsupported(f"has the flag group {pattern[i:j + 1]}, where Prometheus regexes "
                              f"(RE2) take one '-' and a flag after it")
        elif c.isascii() and c.isalpha():
            raise Unsupported(f"uses the flag {c}, which Prometheus regexes (RE2) lack (they "
                              f"know i, m, s and U)")
        else:
            raise Unsupported(f"uses {pattern[i:j + 1]}, which Prometheus regexes (RE2) lack")
    raise Unsupported(f"leaves the flag group {pattern[i:]} open")


def _python_flags(on: str, off: str, opens: bool) -> str:
    """The Python group for flags RE2 turns on and off ("" for none that Python needs).

    RE2 turns them on, then off, so ``(?i-i)`` ends with i off; Python refuses a flag both
    ways. U (lazy repeats greedy and greedy ones lazy) is left out: it changes where a match
    ends, not which names the anchored ``=~`` matches.
    """
    off = "".join(sorted(set(off) - {"U"}))
    on = "".join(sorted(set(on) - set(off) - {"U"}))
    flags = on + ("-" + off if off else "")
    if flags:
        return f"(?{flags}:"
    return "(?:" if opens else ""


def _counts(pattern: str, i: int) -> tuple[int, int | None, int] | None:
    """The counts of the repeat in braces at `i` (None for no upper bound) and where it ends,
    or None where RE2 reads the braces as literal text (``{,2}``, ``{01}``, ``{x}``)."""
    match = _REPEAT.match(pattern, i)
    if not match or not match.group(1):
        return None
    numbers = [number for number in match.groups() if number]
    if any(len(number) > 1 and number.startswith("0") for number in numbers):
        return None
    if any(len(number) > 4 or int(number) > _MAX_REPEAT for number in numbers):
        raise Unsupported(f"repeats more than {_MAX_REPEAT} times, which Prometheus regexes "
                          f"(RE2) refuse")
    low, high = match.groups()
    return int(low), (int(low) if high is None else int(high) if high else None), match.end()


def _repeat_need(low: int, high: int | None, inner: int) -> int:
    """The repeat budget ``x{low,high}`` needs when `x` needs `inner`.

    Go's parser (parse.go, repeatIsValid) refuses a counted repeat whose count is 2 or more
    when the counts along any path into it multiply past 1000: each counted repeat takes its
    highest count (its lowest when unbounded) and passes 1000 divided by it inward, so
    ``(a{100}){20}`` is refused and ``((a{10}){10}){10}`` is not. ``x{0}`` hides what it
    holds; ``*``, ``+`` and ``?`` count for nothing. A budget of n is enough exactly when n is
    at least this product. (Go also refuses a pattern whose compiled program passes 3.3 million
    instructions, and one nested over 1000 deep; under the repeat limit that takes a pattern
    over a thousand characters long, which is not checked here.)
    """
    if high == 0:
        return 0
    count = low if high is None else high
    return count * max(1, inner) if count else inner


@dataclasses.dataclass
class _Group:
    """A group of the pattern (or the whole pattern) while it is translated."""

    start: int  # where its text starts in the output
    # Whether RE2's m flag is on here: without it RE2's $ matches only at the very end, where
    # Python's also matches before a final newline.
    multiline: bool = False
    # Python groups opened for flags set inside it by (?i): closed at its end, and around each |.
    flags: list[str] = dataclasses.field(default_factory=list)
    need: int = 0  # the largest repeat budget its items before the last need (_repeat_need)
    last: int | None = None  # where the item a repeat would apply to starts in the output
    last_need: int = 0
    last_repeated: bool = False

    def next_item(self, start: int | None, need: int = 0) -> None:
        """Settles the last item (no repeat can follow it any more) and starts another."""
        self.need = max(self.need, self.last_need)
        self.last, self.last_need, self.last_repeated = start, need, False

    def total_need(self) -> int:
        """The largest repeat budget anything in the group needs."""
        return max(self.need, self.last_need)


class _Translation:
    """The Python spelling of a pattern, built from its tokens in order."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.groups = [_Group(start=0)]
        # Flags written at the next token that is no repeat: RE2 applies a repeat right after
        # (?i) to the item before it.
        self.pending_flags: list[str] = []
        self.after_repeat = False

    def item(self, text: str) -> None:
        self._flush_flags()
        self.groups[-1].next_item(len(self.out))
        self.out.append(text)
        self.after_repeat = False

    def open_group(self, text: str) -> None:
        self._flush_flags()
        self.groups.append(_Group(start=len(self.out),
                                  multiline=_multiline(text, self.groups[-1].multiline)))
        self.out.append(text)
        self.after_repeat = False

    def close_group(self) -> None:
        self._flush_flags()
        self.after_repeat = False
        if len(self.groups) == 1:
            # Python might read it as closing a group opened for flags, and accept the pattern.
            raise Unsupported("is not a valid regex (a ')' closes no '(')")
        group = self.groups.pop()
        self.out.append(")" * (len(group.flags) + 1))
        self.groups[-1].next_item(group.start, group.total_need())

    def alternative(self) -> None:
        self._flush_flags()
        group = self.groups[-1]
        self.out.append(")" * len(group.flags) + "|" + "".join(group.flags))
        group.next_item(None)
        self.after_repeat = False

    def set_flags(self, text: str) -> None:
        if text:
            self.pending_flags.append(text)
            self.groups[-1].multiline = _multiline(text, self.groups[-1].multiline)
        self.skip()

    def end_anchor(self) -> None:
        """RE2's ``$``: with the m flag, the end of a line (as Python's ``$`` with its m flag);
        without it, only the end of the text (Python's ``\\Z``)."""
        self.item("(?:$)" if self.groups[-1].multiline else "(?:\\Z)")

    def skip(self) -> None:
        """A token that adds no item ((?i), an empty \\Q\\E): still, RE2 ends a run of
        repeats there, and reads a*(?i)* as (?:a*)*."""
        self.after_repeat = False

    def repeat(self, text: str, counts: tuple[int, int | None] | None) -> None:
        group = self.groups[-1]
        # Without an item, or right after a repeat, Python refuses the repeat, as RE2 does.
        if group.last is not None and not self.after_repeat:
            if group.last_repeated:  # a*(?i)*: RE2 repeats the repeat
                self.out[group.last:] = ["(?:" + "".join(self.out[group.last:]) + ")"]
            need = _repeat_need(*counts, group.last_need) if counts else group.last_need
            if counts and max(counts[0], counts[1] or 0) >= 2 and need > _MAX_REPEAT:
                raise Unsupported(f"repeats {text} over inner repeats, {need} times in all; "
                                  f"Prometheus regexes (RE2) refuse nested repeats whose counts "
                                  f"multiply past {_MAX_REPEAT}")
            group.last_need, group.last_repeated = need, True
        self.out.append(text)
        self.after_repeat = True

    def text(self) -> str:
        if len(self.groups) > 1:
            # Python might close it with a group opened for flags, and accept the pattern.
            raise Unsupported("is not a valid regex (a '(' is never closed)")
        self._flush_flags()
        return "".join(self.out) + ")" * len(self.groups[0].flags)

    def _flush_flags(self) -> None:
        self.out.extend(self.pending_flags)
        self.groups[-1].flags.extend(self.pending_flags)
        self.pending_flags.clear()


def _multiline(flags: str, current: bool) -> bool:
    """Whether the m flag is on after the Python flag group `flags` (as _python_flags writes
    it), where it was `current` before."""
    match = _FLAG_GROUP.fullmatch(flags)
    if not match:  # a plain or named group
        return current
    on, off = match.group(1), match.group(2) or ""
    return True if "m" in on else False if "m" in off else current


def _translate(pattern: str) -> str:
    translation, i = _Translation(), 0
    while i < len(pattern):
        c = pattern[i]
        counts = _counts(pattern, i) if c == "{" else None
        if c in "*+?" or counts:
            i = _repeat(translation, pattern, i, counts)
        elif c == "(":
            text, i, opens = _group(pattern, i)
            if opens:
                translation.open_group(text)
            else:
                translation.set_flags(text)
        elif c == ")":
            translation.close_group()
            i += 1
        elif c == "|":
            translation.alternative()
            i += 1
        elif c == "$":
            translation.end_anchor()
            i += 1
        elif c == "^":
            translation.item("(?:^)")  # grouped: RE2 takes a repeat of an anchor
            i += 1
        elif pattern.startswith("\\Q", i):
            quoted, i = _quoted(pattern, i)
            for char in quoted:  # one item each, as a repeat after \E takes the last one
                translation.item(re.escape(char))
            if not quoted:
                translation.skip()
        elif c == "\\":
            text, i = _escape(pattern, i, in_class=False)
            translation.item(text)
        elif c == "[":
            text, i = _char_class(pattern, i)
            translation.item(text)
        else:
            # A { that opens no repeat is literal text to RE2.
            translation.item("\\{" if c == "{" else c)
            i += 1
    return translation.text()


def _repeat(translation: _Translation, pattern: str, i: int,
            counts: tuple[int, int | None, int] | None) -> int:
    """Adds the repeat operator at `i` (``*``, ``+``, ``?`` or counts in braces, perhaps made
    lazy by a ``?``) and returns where the pattern goes on."""
    after = counts[2] if counts else i + 1
    if pattern.startswith("+", after):
        raise Unsupported("uses a possessive repeat (*+, ++, ?+), which Prometheus regexes "
                          "(RE2) lack")
    if pattern.startswith("?", after):
        after += 1
    translation.repeat(pattern[i:after], counts[:2] if counts else None)
    return after


def _quoted(pattern: str, i: int) -> tuple[str, int]:
    """The text between the \\Q at `i` and the next \\E, and where the pattern goes on."""
    end = pattern.find("\\E", i + 2)
    if end < 0:
        # Prometheus wraps the regex in ^(?:...)$, which an open \Q would swallow.
        raise Unsupported("opens \\Q without closing it with \\E")
    return pattern[i + 2:end], end + 2


@functools.lru_cache(maxsize=1024)
def python_regex(pattern: str) -> re.Pattern[str]:
    """The Python regex matching what RE2 matches with `pattern`.

    Compiled with DOTALL: Prometheus 3 wraps every regex in ``(?s:...)``, so ``.`` also
    matches a newline (Prometheus 2 does not, which only matters for names holding one).
    Raises Unsupported naming the syntax RE2 refuses or Python cannot be made to follow.

    >>> python_regex(r"(?i)fr\\pL+").fullmatch("FRaud") is not None
    True
    >>> python_regex("(a{100}){20}")
    Traceback (most recent call last):
    ...
    inferwatch.generate.re2.Unsupported: repeats {20} over inner repeats, 2000 times in all; \
Prometheus regexes (RE2) refuse nested repeats whose counts multiply past 1000
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
    """Whether Prometheus' anchored ``=~`` with `pattern` matches the label value `name`.

    >>> matches("fraud|churn", "churn"), matches("fraud|churn", "churner")
    (True, False)
    """
    return python_regex(pattern).fullmatch(name) is not None
