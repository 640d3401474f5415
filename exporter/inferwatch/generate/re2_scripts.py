"""The Unicode scripts RE2's ``\\p{Greek}`` names, as data for :mod:`inferwatch.generate.re2`.

Python's ``re`` has no Unicode classes, so the config check spells a script out as ranges of
code points. They are stored compressed (:data:`SCRIPT_RUNS`) and rebuilt with fontTools' copy
of the Unicode Character Database, where it is installed (``tests/test_re2_syntax.py`` checks
that the two agree)::

    python -m inferwatch.generate.re2_scripts   # prints SCRIPT_RUNS anew

>>> from inferwatch.generate.re2_scripts import decode_runs
>>> runs = decode_runs(encode_runs(lambda code: 1 if 65 <= code <= 90 else 0))
>>> runs[:2]
[(0, 64, 0), (65, 90, 1)]
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable

_MAX_CODE_POINT = 0x10FFFF
_LINE_CHARS = 96


def encode_runs(script_of: Callable[[int], int]) -> str:
    """Every code point's script number (0: none) as :data:`SCRIPT_RUNS` stores them."""
    encoded = bytearray()
    previous, length = script_of(0), 0
    for code in range(_MAX_CODE_POINT + 2):
        script = script_of(code) if code <= _MAX_CODE_POINT else -1
        if script == previous:
            length += 1
            continue
        while length >= 0x80:  # seven bits a byte, low bits first
            encoded.append(length & 0x7F | 0x80)
            length >>= 7
        encoded += bytes((length, previous))
        previous, length = script, 1
    return base64.b64encode(zlib.compress(bytes(encoded), 9)).decode()


def decode_runs(text: str) -> list[tuple[int, int, int]]:
    """(first, last, script number) of each run stored in `text`."""
    data = zlib.decompress(base64.b64decode(text))
    runs, code, position = [], 0, 0
    while position < len(data):
        length = shift = 0
        while True:
            byte, position = data[position], position + 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        script, position = data[position], position + 1
        runs.append((code, code + length - 1, script))
        code += length
    return runs


def from_unicode_database() -> str:
    """:data:`SCRIPT_RUNS` as fontTools' Unicode Character Database gives them."""
    from fontTools import unicodedata

    number = {name: place for place, name in enumerate(SCRIPTS, start=1)}

    def script_of(code: int) -> int:
        name = unicodedata.script_name(unicodedata.script(chr(code)), default="")
        return number.get(name.replace(" ", "_"), 0)

    return encode_runs(script_of)


# The scripts Go's \p{...} knows in every release Prometheus 2.45 and later are built with: those
# of Unicode 13.0 (Go 1.16 to 1.20). Later Go releases add the scripts of later Unicode versions
# (Kawi, Toto, ...), which Prometheus built with older ones refuses.
SCRIPTS = (
    "Adlam", "Ahom", "Anatolian_Hieroglyphs", "Arabic", "Armenian", "Avestan", "Balinese", "Bamum",
    "Bassa_Vah", "Batak", "Bengali", "Bhaiksuki", "Bopomofo", "Brahmi", "Braille", "Buginese",
    "Buhid", "Canadian_Aboriginal", "Carian", "Caucasian_Albanian", "Chakma", "Cham", "Cherokee",
    "Chorasmian", "Common", "Coptic", "Cuneiform", "Cypriot", "Cyrillic", "Deseret", "Devanagari",
    "Dives_Akuru", "Dogra", "Duployan", "Egyptian_Hieroglyphs", "Elbasan", "Elymaic", "Ethiopic",
    "Georgian", "Glagolitic", "Gothic", "Grantha", "Greek", "Gujarati", "Gunjala_Gondi", "Gurmukhi",
    "Han", "Hangul", "Hanifi_Rohingya", "Hanunoo", "Hatran", "Hebrew", "Hiragana",
    "Imperial_Aramaic", "Inherited", "Inscriptional_Pahlavi", "Inscriptional_Parthian", "Javanese",
    "Kaithi", "Kannada", "Katakana", "Kayah_Li", "Kharoshthi", "Khitan_Small_Script", "Khmer",
    "Khojki", "Khudawadi", "Lao", "Latin", "Lepcha", "Limbu", "Linear_A", "Linear_B", "Lisu",
    "Lycian", "Lydian", "Mahajani", "Makasar", "Malayalam", "Mandaic", "Manichaean", "Marchen",
    "Masaram_Gondi", "Medefaidrin", "Meetei_Mayek", "Mende_Kikakui", "Meroitic_Cursive",
    "Meroitic_Hieroglyphs", "Miao", "Modi", "Mongolian", "Mro", "Multani", "Myanmar", "Nabataean",
    "Nandinagari", "New_Tai_Lue", "Newa", "Nko", "Nushu", "Nyiakeng_Puachue_Hmong", "Ogham",
    "Ol_Chiki", "Old_Hungarian", "Old_Italic", "Old_North_Arabian", "Old_Permic", "Old_Persian",
    "Old_Sogdian", "Old_South_Arabian", "Old_Turkic", "Oriya", "Osage", "Osmanya", "Pahawh_Hmong",
    "Palmyrene", "Pau_Cin_Hau", "Phags_Pa", "Phoenician", "Psalter_Pahlavi", "Rejang", "Runic",
    "Samaritan", "Saurashtra", "Sharada", "Shavian", "Siddham", "SignWriting", "Sinhala", "Sogdian",
    "Sora_Sompeng", "Soyombo", "Sundanese", "Syloti_Nagri", "Syriac", "Tagalog", "Tagbanwa",
    "Tai_Le", "Tai_Tham", "Tai_Viet", "Takri", "Tamil", "Tangut", "Telugu", "Thaana", "Thai",
    "Tibetan", "Tifinagh", "Tirhuta", "Ugaritic", "Vai", "Wancho", "Warang_Citi", "Yezidi", "Yi",
    "Zanabazar_Square",
)
# Scripts.txt of Unicode 18.0 (as fontTools 4.68 ships it) as runs over all code points, each a
# length (seven bits a byte, low bits first) and a byte naming its script (its place in SCRIPTS
# counting from 1, or 0 for none of them), zlib-compressed and in base64: what encode_runs()
# writes. The characters Python's unicodedata does not know are left out where it is read, so
# scripts follow the Unicode version categories do.
SCRIPT_RUNS = (
    "eNp9l1tsVNcVhv99Ode5+jbDHns8g7HHxmN7BrA5xtjYYMbgQLi5XE2MSYDcaEsDbcitsQmEBIghgSQEqiaqUNRWldpK"
    "lSLe2qpVH6o+NqraPETtO8pDValSI/U/h4FWUdWHb9ba6+yzzzlr7f3vPRtNrmaTihG1FLFMtiZMgfxK1bqNxYBMNJtT"
    "gS4Lo8oSoRVlDRHZMCZCH81kvJzMpcsXRF4GPxJ5gZIlMEzWDdpoHdSwB2OwtDA2SRJFisTXsSCnRXCSfodOXhQYvSih"
    "Llb16reTWP8E/ScGXpJIvSTQtktC7BKIXbTQoS1s4z15vbugg1RBmlxBxwTcmIQkGfoOETEFzbZXj+uYy5imL2CxbYga"
    "ELAHGBvgffQdIh/CZ9Ja9etqQLHtQDMW2oYBH6pPwCOhzRCHSGL1Sfj1uKIv+lLQtPE+J+qjTvF9T/G9SIa+QySx2Pbq"
    "cXXKYls/jDee8iGX+L5LCopW04ZtQWTkh3GF+JKG9bAPn71kkyRaliwkrvHZJEvS1/iseltfcyDrvmRcE58x71pilFGS"
    "JT6xRnlXPaZHedeoVfdldF2NxpHYSUvW1K29UyO9UyIXthcFGhcVltF6RCxKOGyLRc6UqM3MLNrwGVeLcYy8w1ln2t7p"
    "gtzMq8Qiy+p+drOM2qHvEJ9tvbmIrdcFOq9rdEdWIEWc69rI6134SMyVunlLt0Ukyt3C6O4FWZ0u8StKfBtaUfdX1u3y"
    "/3EtRbuu7k+SYkkhV7KxLythkwWrMX9CYduLysRedJB5w4N4o2W1NB6aG5ikN5kMIt+MY24jk7fRjpCz0ohZYZpnbRyc"
    "dVCetTDV6KOwRSC+RUeILSzzlvZL/PhLMfQd1cgdtRE7yklwtLixLc0JlB6/LJC/LBG7zHFJkv7GIIVHHYHVzsSFQd+F"
    "9oenFFJETVWfjOUtZoNp73YvuFCBMAniBNqIwCbKSLYtlGpWWeRX8VeTRE3kp2qiPBEsyFqGWmGTUt26dZ14QIGxIdoU"
    "SUZ9BJpoQz3xSJyP2G+4zilKMvpNm3Sty8SwnK9eovbwJShdotZKGszKmjIatyyTYecWfOSYBZn6O+uMS8LM9xRrZ3IW"
    "nNx/13v4BiftjSTEjWzJiwr6/yjm5ziYNm3IVQQOVuL4VFRyaDGiQiWsGONVdCCrrtEVpgn7hpj6QBo1JMyhMdoxpjQh"
    "MFflejPFRInFFyY9VmB7whSqu01lTJgDYz8U5pdrKhNm4Y6ovOXdVghue6g+8hP5fjPm8wdcFx3mBL91psbi15JI1fpf"
    "V/CNjeHvuJh62UX8ZRvFwsAGvtWGzhdiEC/kqwo7Rvjhxh+hiowU5gSCjIdkhpON6ExxbvLKMlhXsnt92JzB9/lPUsrc"
    "EDyWVtcksy6xKzuwl/futXFnfzWObFVjVfX8JtyTFYlnKiU4tTgsy0JukMuUCCLr+IP3lJbmmtBFpHU6CF8+Gcj8Cqat"
    "iWgWktsELgpNzWKgWN+kYsZnjvqZzQK/yK7Khyi2HfZ0jA/uWIhPC+RIE5EkNS2RnO7AS9PUKA7fbxQ8s5PzLEFPlCuM"
    "iOAc18k2hVVNKYigld06n/agnm5dydI9a6H9PX7He50nNZIne7Grvfrd9ueYhOdsdH5LR/R0uhhsZsqbqZ6fyK0eMlt9"
    "uFuXwa4J9JJkbQJ2Gz+rTaCPyDY+Pmpn1nLiry2eKRxx4R2pomkNr66h8K9pe559ns9t56zdPoHigWX7NZr3Swzs1+Ps"
    "M27BpVUkP85UjGv44xRsUvxG8ZkiundTK3Z7WGszSXZmHRfjuqZh3jXceJab2Nk4nLO7MP3NAGueShAH9lM9q1z4qz6W"
    "KLAQvbc4/C3O51tpcO9GiaR1z9dd9J7bh7Zlzch2ediRZBKSnNXJyfU+xHruq6858F+zMdRCpW9x0f2oh/lXeFZYjKFx"
    "k0Bl0wY4jzGpRJMUiT1mY/2kBX/Shu7lDtDL55IMfYdIYhERePUriohe7my9XOD0nV7FHtS8w4+z6+Pt2Pouv+XdjwXW"
    "vko9erUDtUMx+IdsJGabMPIWRZE0z7WhVVLLpUZW3uURZPkxzHwQh/jAKfIBxC3y8aQ9spxkRQ9+cQruPGtBYvOt2Po9"
    "FzPnE0g3rvu2g1hhL9xXbrKwcYF+koz7yMcVinv4RXvY3jMNZ4bDkb4ZlrnuezN85Rkbdj/bpKtu7X5mtH+KJ5d7AmbH"
    "J8zDIymsXkpwX7/ltJ7Ab2RrHAda7wisb/1nIz51V/i4XVhh4Xda3Z3EXe06KBzmGjxMITg8j3aPC8jzMXXah3+aKSYt"
    "py00nf6ZhdmvHce2gxrrDvKMc3AC4qo4JitiIgan4mFh7dW/qIlOiInlV4/g9NUvJ6HHOAKRRIx9KIfUmBiyxjgnhvJQ"
    "VEQxloQ15uCKOna+Ec928BzSwZXYwa/qoA51aPNZO77kyRC/UFSFLJe0Mi6Wc0kPBBLZwMMZM4p/UMnQzR1ig1FBg3Gp"
    "s07QbnSwx0yVfW4AMugyG9Bs4hH7qbXG8Fi5l+NtIRQxCouMbCjWcSMioQklZGOkQKx2vd0WtTmToj73ZeaP3JhxJ7x7"
    "tbliLaRgLXD2LuxC3vzNwblQl53aWm6PshyrOT0CDT2cl7SSWD0WNuSXQ+RPof+4QvI4ReQ4y3H8C4mRm1zlNz+/r7ya"
    "SBKeL34r9kmk963EdsH1TaR428Zmsx1j5tfsyiXZSiSJZJPW1/fjIoILROu6fx/1lf5f5cG1cAynPtaD8cKxG3j8Dsew"
    "In+Q/XnG7KNsHmPOU0wO/1BEdLFaPxUmQM6IIWkSUSfPcPc1SdiG6vJnh90bmN1Qjj/jMYwl0Uy9xjDLH24QPbTtobIz"
    "Ft7mmW78STKYZDC8a0u9Po3mvqjHeT65Hhb1ScMzzOd/kJUiPuzg1r3Uzz3q5yOVFO7pyg+a8H1d+WsMvy9VLPx4U+Xi"
    "+2UO0455w5J+IYJr/4rh3zm6bxc="
)


if __name__ == "__main__":
    runs = from_unicode_database()
    print("SCRIPT_RUNS = (")
    for start in range(0, len(runs), _LINE_CHARS):
        print(f'    "{runs[start:start + _LINE_CHARS]}"')
    print(")")
