"""RE2 syntax in config regexes as Go's regexp/syntax reads it: Unicode classes, flags
anywhere, octal escapes and nested repeats are accepted or refused as Prometheus does, and
matched as Prometheus matches them."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
import unicodedata
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.generate.promql import quoted
from inferwatch.generate.re2 import Unsupported, matches, python_regex
from promtool_cases import assert_promtool_passes

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def refusal(pattern: str) -> str:
    with pytest.raises(Unsupported) as caught:
        python_regex(pattern)
    return str(caught.value)


def promtool_refusals(patterns: list[str]) -> dict[str, str]:
    """The patterns promtool refuses in an ``=~`` matcher, with its reasons."""
    rules = {"groups": [{"name": "re2", "rules": [
        {"record": f"r{i}", "expr": f"up{{job=~{quoted(pattern)}}}"}
        for i, pattern in enumerate(patterns)]}]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yml"
        path.write_text(yaml.safe_dump(rules, allow_unicode=True))
        result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True,
                                text=True, timeout=120)
    reasons = {patterns[int(place)]: reason for place, reason
               in re.findall(r'"r(\d+)": (.*)', result.stdout + result.stderr)}
    assert result.returncode == (1 if reasons else 0), result.stdout + result.stderr
    return reasons


def accepted(pattern: str) -> bool:
    try:
        python_regex(pattern)
    except Unsupported:
        return False
    return True


# --- Unicode classes -------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", [
    "\\pL", "\\PL", "\\p{Greek}", "\\P{Greek}", "\\p{^Greek}", "\\P{^Greek}", "[\\p{L}\\d]",
    "[^\\PL]", "mod\\pN+", "\\p{Any}", "(?i)\\p{Lu}", "[\\P{Han}x]+",
])
def test_unicode_classes_are_accepted(pattern: str) -> None:
    python_regex(pattern)


# Go's unicode.Categories, and a sample of its unicode.Scripts as of Unicode 13.0 (Go 1.16 to
# 1.20), the names every Prometheus release since 2.45 knows.
@pytest.mark.parametrize("name", [
    "C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N",
    "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So",
    "Z", "Zl", "Zp", "Zs", "Latin", "Greek", "Cyrillic", "Han", "Hiragana", "Katakana", "Arabic",
    "Hebrew", "Devanagari", "Common", "Inherited", "Canadian_Aboriginal", "Nko", "SignWriting",
    "Yezidi", "Chorasmian", "Dives_Akuru", "Khitan_Small_Script", "Any",
])
def test_every_category_and_script_go_knows_is_accepted(name: str) -> None:
    python_regex(f"\\p{{{name}}}")
    python_regex(f"\\P{{{name}}}")


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("\\p{Greek}+", "λόγος", True), ("\\p{Greek}+", "logos", False),
    ("\\P{Greek}+", "logos", True), ("\\p{^Greek}", "λ", False), ("\\P{^Greek}", "λ", True),
    ("\\pL+", "modèle", True), ("\\pL", "1", False), ("\\PL", "1", True), ("\\PL", "é", False),
    ("[\\p{L}\\d]+", "é1", True), ("[\\p{L}\\d]", "٣", False), ("[^\\PL]", "é", True),
    ("[^\\PL]", "1", False), ("\\p{Han}+", "中文", True), ("\\p{Lu}", "É", True),
    ("\\p{Lu}", "é", False), ("(?i)\\p{Lu}", "é", True), ("(?i)\\P{Lu}", "é", False),
    ("\\p{Any}", "\x00", True), ("\\P{Any}", "a", False), ("[\\P{Any}a]", "a", True),
    ("\\pN", "Ⅷ", True), ("\\p{Inherited}", "\u0300", True), ("\\p{Common}", "1", True),
    ("\\p{Latin}", "1", False), ("\\p{Latin}+", "Straße", True), ("\\p{Cyrillic}", "Ж", True),
])
def test_unicode_classes_match_what_go_lists(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


@given(st.characters())
def test_letter_classes_follow_the_unicode_database(char: str) -> None:
    letter = unicodedata.category(char).startswith("L")
    assert matches("\\pL", char) is letter
    assert matches("\\PL", char) is not letter
    assert matches("[\\pL\\d]", char) is (letter or char in "0123456789")
    assert matches("\\p{Greek}", char) is not matches("\\p{^Greek}", char)


@pytest.mark.parametrize(("pattern", "named"), [
    # Go 1.25 and later also know category aliases, LC, Cn, Assigned and ASCII, and take names
    # in any case; Go 1.21 and later know the scripts of Unicode 14 and 15. Prometheus builds
    # with older Go refuse them all.
    ("\\p{Letter}", "\\p{Letter}"), ("\\p{greek}", "\\p{greek}"), ("\\p{LC}", "\\p{LC}"),
    ("\\p{Cn}", "\\p{Cn}"), ("\\p{Assigned}", "\\p{Assigned}"), ("\\p{ASCII}", "\\p{ASCII}"),
    ("\\p{Tangsa}", "\\p{Tangsa}"), ("\\p{Kawi}", "\\p{Kawi}"),
    # Unknown to every Go release: no Unknown script, no short script codes.
    ("\\p{Unknown}", "\\p{Unknown}"), ("\\p{Latn}", "\\p{Latn}"), ("\\p{}", "\\p{}"),
    ("\\pé", "\\pé"), ("\\p^L", "\\p^"), ("[a\\P{Nope}]", "\\P{Nope}"),
])
def test_unknown_unicode_classes_are_refused_by_name(pattern: str, named: str) -> None:
    message = refusal(pattern)
    assert f"unknown Unicode class {named};" in message


def test_a_unicode_class_without_its_name_is_refused() -> None:
    assert "no class name" in refusal("a\\p")
    assert "without closing it with }" in refusal("\\p{Greek")


@pytest.mark.parametrize(("pattern", "name"), [
    ("(?i)\\W", "k"), ("(?i)\\W", "s"), ("(?i)[\\W]", "K"), ("(?i)[[:^lower:]]", "a"),
])
def test_a_negated_class_is_case_folded_before_it_is_negated(pattern: str, name: str) -> None:
    # RE2 folds \w to take the Kelvin sign and the long s too, then negates it: (?i)\W
    # matches neither k nor s.
    assert not matches(pattern, name)


# --- flags -----------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", [
    "(?U)a*", "a(?i)b", "a(?sm)b", "(?-i)a", "x(?i-s)y", "(?i-s:x(?U)y)", "(?i-i)a", "a(?ii)b",
    # Go's parser reads an empty flag group as setting no flag.
    "(?)a", "a(?)",
    # Go applies a repeat right after flags to the item before them.
    "a(?i)*", "a*(?i)*",
])
def test_flags_are_accepted_anywhere(pattern: str) -> None:
    python_regex(pattern)


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("a(?i)b", "aB", True), ("a(?i)b", "AB", False),
    # The flags hold to the end of their group, across |.
    ("x(?i)y|z", "Z", True), ("(a(?i)b|c)d", "Cd", True), ("(a(?i)b|c)d", "cD", False),
    ("(?i)a(?-i)b", "Ab", True), ("(?i)a(?-i)b", "AB", False), ("(?i-i)a", "A", False),
    ("(?U)a+", "aaa", True), ("(?)ab", "ab", True),
    ("a(?i)*b", "aaB", True), ("a(?i)*b", "AB", False), ("a*(?i)*b", "aaB", True),
])
def test_flags_hold_to_the_end_of_their_group(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


@pytest.mark.parametrize(("pattern", "named"), [
    ("(?i-)a", "(?i-)"), ("(?-)a", "(?-)"), ("(?--i)a", "(?--"), ("(?i-m-s)a", "(?i-m-"),
    ("(?i", "(?i"), ("a(?x)b", "flag x"), ("(?L)a", "flag L"),
])
def test_malformed_flags_are_refused_by_name(pattern: str, named: str) -> None:
    assert named in refusal(pattern)


# --- octal escapes ---------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "name"), [
    ("\\12", "\n"), ("\\77", "?"), ("\\400", "\u0100"), ("\\777", "\u01ff"), ("[\\12]", "\n"),
    ("[\\60-\\71]+", "42"), ("x\\12{2}", "x\n\n"),
])
def test_octal_escapes_of_two_or_three_digits_are_characters(pattern: str, name: str) -> None:
    assert matches(pattern, name)


@pytest.mark.parametrize(("pattern", "name"), [
    ("\\0", "\x00"), ("\\01", "\x01"), ("\\012", "\n"), ("\\0123", "\n3"), ("\\101", "A"),
    ("[\\101-\\132]+", "RE"),
])
def test_octal_escapes_with_three_digits_or_a_leading_zero_are_characters(
        pattern: str, name: str) -> None:
    assert matches(pattern, name)


@pytest.mark.parametrize("pattern", ["\\1", "(a)\\1", "[\\1]", "\\7x", "\\18"])
def test_a_single_digit_escape_is_a_refused_back_reference(pattern: str) -> None:
    assert "back-reference" in refusal(pattern)


def test_escaped_8_and_9_are_refused() -> None:
    assert "escape \\8" in refusal("\\8")
    assert "escape \\9" in refusal("[\\9]")


# --- nested repeats --------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", [
    "(a{100}){20}", "((a{10}){10}){11}", "(a{1000}b){2}", "((a{600}){0,1}){2}", "(a{500}|b){3}",
    "(?:a{2,}){501}", "(a{30}b*){34}", "(x(a{2}){500}){2}", "a{600}(?i){2}",
])
def test_nested_repeats_multiplying_past_1000_are_refused(pattern: str) -> None:
    assert "multiply past 1000" in refusal(pattern)


@pytest.mark.parametrize("pattern", [
    "((a{10}){10}){10}", "(a{2}){500}", "((a{1000}){0}){2}", "(a*){1000}", "(a+b?){1000}",
    "(a{1,}){1000}", "(a{0,}){1000}", "(a{1}){1000}", "(a{500}){2}b{1000}",
])
def test_nested_repeats_within_1000_are_accepted(pattern: str) -> None:
    python_regex(pattern)


@given(st.lists(st.integers(1, 1000), min_size=1, max_size=4))
def test_nested_repeats_are_refused_exactly_past_1000(counts: list[int]) -> None:
    pattern = "a"
    for count in counts:
        pattern = f"({pattern}){{{count}}}"
    assert accepted(pattern) is (math.prod(counts) <= 1000)


# --- what Go accepts, built from its grammar -------------------------------------------------

_CLASS_NAMES = ["L", "Lu", "Ll", "N", "Nd", "P", "S", "Z", "Greek", "Latin", "Han", "Cyrillic",
                "Common", "Any"]
_UNICODE_CLASSES = st.builds(
    lambda sign, caret, name: (f"\\{sign}{name}" if len(name) == 1 and not caret
                               else f"\\{sign}{{{'^' if caret else ''}{name}}}"),
    st.sampled_from("pP"), st.booleans(), st.sampled_from(_CLASS_NAMES))
_OCTALS = st.one_of(st.integers(0o10, 0o777).map(lambda code: f"\\{code:o}"),
                    st.integers(0, 0o77).map(lambda code: f"\\0{code:o}"))
# Three digits, so that no digit after one reads as part of it.
_CLASS_OCTALS = st.one_of(st.integers(0o100, 0o777).map(lambda code: f"\\{code:o}"),
                          st.integers(0, 0o77).map(lambda code: f"\\0{code:02o}"))
_CLASS_MEMBERS = st.one_of(_UNICODE_CLASSES, _CLASS_OCTALS, st.sampled_from(
    ["a", "z", "0-9", "é", "\\d", "\\S", "\\W", "[:alpha:]", "[:^digit:]"]))
_BRACKETS = st.builds(lambda negated, members: f"[{'^' if negated else ''}{''.join(members)}]",
                      st.booleans(), st.lists(_CLASS_MEMBERS, min_size=1, max_size=3))
_ATOMS = st.one_of(_UNICODE_CLASSES, _OCTALS, _BRACKETS,
                   st.sampled_from(["a", "B", "é", "λ", ".", "\\d", "\\W", "\\.", "\\x{e9}"]))
_FLAGS = st.builds(lambda on, off: on + ("-" + off if off else ""),
                   st.text("imsU", max_size=3), st.text("imsU", max_size=2))


@st.composite
def re2_patterns(draw: st.DrawFn, budget: int = 1000, depth: int = 0) -> str:
    """Patterns Go accepts: items with repeats whose counts multiply to at most `budget`,
    flags set anywhere, groups and alternatives."""
    pieces = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 4)) == 0:
            pieces.append(f"(?{draw(_FLAGS)})")
            continue
        count = draw(st.one_of(st.none(), st.integers(0, min(budget, 50)), st.just(budget)))
        inner = budget // count if count else budget
        if depth < 3 and draw(st.booleans()):
            opening = draw(st.one_of(st.sampled_from(["(", "(?:"]),
                                     _FLAGS.map(lambda flags: f"(?{flags}:")))
            piece = opening + draw(re2_patterns(inner, depth + 1)) + ")"
        else:
            piece = draw(_ATOMS)
        repeat = draw(st.sampled_from(["", "*", "+?", "?"])) if count is None else f"{{{count}}}"
        pieces.append(piece + repeat)
    pattern = "".join(pieces)
    if draw(st.integers(0, 3)) == 0:
        pattern += "|" + draw(re2_patterns(budget, depth + 1))
    return pattern


@given(re2_patterns())
def test_every_pattern_built_from_go_syntax_is_accepted(pattern: str) -> None:
    python_regex(pattern)


# --- promtool agrees -------------------------------------------------------------------------

# Refused by every Go release Prometheus is built with (so not \p{Letter}, which Go 1.25 takes).
_REFUSED = ["\\p{Unknown}", "\\p{Latn}", "\\p{}", "\\pé", "\\p", "\\p{Greek", "(?i-)a", "(?-)a",
            "(?--i)a", "(?x)a", "\\1", "[\\1]", "\\8", "(a{100}){20}", "((a{10}){10}){11}",
            "(a{1000}b){2}", "a{600}(?i){2}", "a{1001}"]
_ACCEPTED = ["\\pL", "\\PL", "\\p{Greek}", "\\P{Greek}", "\\p{^Greek}", "[\\p{L}\\d]",
             "(?U)a*", "a(?i)b", "(?i-s:x)", "(?sm)a", "(?-i)a", "(?)a", "a(?i)*", "\\12",
             "\\101", "\\0", "\\01", "\\012", "\\400", "((a{10}){10}){10}",
             "((a{1000}){0}){2}", "(a{2}){500}"]


@pytest.mark.integration
def test_promtool_accepts_and_refuses_the_same_patterns() -> None:
    refused = promtool_refusals(_REFUSED + _ACCEPTED)
    assert set(refused) == set(_REFUSED)
    assert [pattern for pattern in _REFUSED if accepted(pattern)] == []
    assert [pattern for pattern in _ACCEPTED if not accepted(pattern)] == []


@pytest.mark.integration
@settings(max_examples=5)
@given(st.lists(re2_patterns(), min_size=20, max_size=40),
       st.lists(st.lists(st.integers(1, 1000), min_size=2, max_size=3), max_size=10))
def test_promtool_accepts_every_pattern_built_from_go_syntax(
        patterns: list[str], nested_counts: list[list[int]]) -> None:
    nested = []
    for counts in nested_counts:
        pattern = "a"
        for count in counts:
            pattern = f"({pattern}){{{count}}}"
        nested.append(pattern)
    refused = promtool_refusals(patterns + nested)
    assert [pattern for pattern in patterns if pattern in refused] == []
    assert {pattern for pattern in patterns + nested if not accepted(pattern)} == set(refused)


# Characters whose case folding or class Go and Python agree on in every Unicode version from
# 13.0 on (not the Turkish dotted and dotless i, which Python folds with i).
_NAMES = ["a", "A", "b", "B", "k", "K", "\u212a", "s", "S", "\u017f", "é", "É", "λ", "Λ", "ω",
          "Ω", "\u2126", "µ", "中", "1", "٣", "_", "-", " ", "Ǆ", "ǅ", "ǆ", "Ⅷ", "\u0300", "aB",
          "AB", "ab", "Ab", "aaB", "Cd", "cD", "x\n", "\x00", "ÿ", "Ÿ"]
_MATCHED = ["\\pL", "\\PL", "\\p{Lu}", "(?i)\\p{Lu}", "(?i)\\P{Lu}", "\\p{Lt}", "(?i)\\p{Lt}",
            "\\p{Greek}", "(?i)\\p{Greek}", "\\P{Greek}", "(?i)\\P{Greek}", "[\\p{L}\\d]",
            "[^\\PL]", "(?i)[^\\PL]", "(?i)\\W", "(?i)[\\W]", "(?i)[[:^lower:]]", "\\pN",
            "\\p{Nl}", "\\p{Inherited}", "\\p{Common}", "\\p{Han}", "(?i)\\p{Latin}",
            "\\p{Any}", "\\P{Any}", "[\\P{Any}a]", "[^\\P{Any}]", "\\101", "\\0", "\\12\\12?",
            "(?i)[\\101-\\132]", "a(?i)b", "(?i)ab|b", "a(?i)*b", "(a(?i)b|c)d", "(?U)a+B?",
            "(?i)a(?-i)b", "x(?-s:.)", "\\p{Cc}\\n?"]


@pytest.mark.integration
def test_promtool_matches_the_names_python_matches(tmp_path: Path) -> None:
    series = [{"series": f"up{{job={quoted(name)}, instance=\"i\"}}", "values": "1"}
              for name in _NAMES]
    assert_promtool_passes(tmp_path, series, exprs=[{
        "expr": f"count by (job) (up{{job=~{quoted(pattern)}}})", "eval_time": "0m",
        "exp_samples": [{"labels": f"{{job={quoted(name)}}}", "value": 1}
                        for name in _NAMES if matches(pattern, name)]}
        for pattern in _MATCHED])


def test_the_stored_scripts_are_the_unicode_databases() -> None:
    """SCRIPT_RUNS is what `python -m inferwatch.generate.re2_scripts` builds from the
    Unicode Character Database fontTools ships (the data is not typed in by hand)."""
    pytest.importorskip("fontTools.unicodedata")
    from inferwatch.generate import re2_scripts

    assert re2_scripts.from_unicode_database() == re2_scripts.SCRIPT_RUNS
