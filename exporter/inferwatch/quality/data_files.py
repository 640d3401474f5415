"""Reading DATA files into columns: CSV (the standard library, block by block) and Parquet
(pyarrow and pandas), as ``inferwatch profile`` and ``inferwatch report`` read them.

A CSV column is numeric when every non-empty value is a number as pandas reads one, boolean
when every one is true or false in any case, text otherwise; gzip-compressed or not;
comma-separated only. A pipe or stdin is copied to a temporary file first
(:func:`seekable_copy`): a file is read twice. Problems with the input raise
:class:`ProfileError`, one line for the command to print.

>>> import os, tempfile
>>> folder = tempfile.TemporaryDirectory()
>>> path = os.path.join(folder.name, "train.csv")
>>> with open(path, "w") as f:
...     _ = f.write("age,city\\n31,Oslo\\nNA,Bergen\\n")
>>> columns = read_csv(path, Progress("", enabled=False))
>>> columns["age"].tolist(), columns["city"].tolist()
([31.0, nan], ['Oslo', 'Bergen'])
>>> folder.cleanup()
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

# Values read as missing in CSV cells (as pandas reads them by default, a common subset).
MISSING_TOKENS = frozenset({"", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "#N/A"})
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
# The first bytes of gzip data: a CSV file starting with them is read decompressed.
GZIP_MAGIC = b"\x1f\x8b"
# The first bytes of the other compressions a CSV export comes in (bzip2: "BZh", the level,
# then the magic number of its first block), by the name the error messages give them.
OTHER_MAGIC = {"bzip2": b"BZh?1AY&SY", "xz": b"\xfd7zXZ\x00", "zstd": b"\x28\xb5\x2f\xfd",
               "zip": b"PK\x03\x04"}
# A number written as an integer: how a CSV tells a model's integer labels from its floats.
_INTEGER_TEXT = re.compile(r"\s*[+-]?\d+\s*", re.ASCII)
# A number as pandas.read_csv reads one: ASCII decimal digits, an optional exponent,
# infinity in any case, and the NaN spellings pandas takes as missing. Python's float()
# takes more (``1_000``, ``١٢``), which pandas reads as text: a profile typing them as
# numbers would count every live value of the column as a wrong type.
_CSV_NUMBER = re.compile(
    r"\s*(?:[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?i:inf(?:inity)?))|-?(?:nan|NaN))\s*",
    re.ASCII)
# Every character of a block of such numbers when none is infinite, NaN or missing text:
# float() reads exactly those numbers from them, and a whole block is checked at once.
_PLAIN_NUMBER_CHARACTERS = "0123456789.eE+- \t"


class ProfileError(Exception):
    """A problem with the command's input: printed as one line, exit status 2."""


class MissingExtra(ProfileError):
    """A package the input needs is not installed; the message names the extra."""


def flag_value(name: str) -> str:
    r"""A column name as a flag's value in a hint: quoted as the shell takes it, or as repr
    when it holds what a terminal would act on (line breaks, escape sequences).

    >>> print(flag_value("age"), flag_value("sign-up day"), flag_value("y\x1b[2J"))
    age 'sign-up day' 'y\x1b[2J'
    """
    return shlex.quote(name) if name.isprintable() else repr(name)


@contextlib.contextmanager
def seekable_copy(path: str) -> Iterator[str]:
    """`path` itself when it is a regular file; for ``-`` (stdin) or a pipe (``<(zcat
    train.csv.gz)``, ``/dev/stdin``), a temporary file holding what it gives: a file is read
    twice (its encoding and compression are seen in its first bytes, a column that turns to
    text late is read again), which a pipe cannot be. The copy is on disk, not in memory."""
    if path != "-" and os.path.isfile(path):
        yield path
        return
    if path != "-" and not os.path.exists(path):
        raise ProfileError(f"DATA file not found: {path}")
    if os.path.isdir(path):
        raise ProfileError(f"DATA {path} is a directory, not a file")
    import shutil
    import tempfile

    if path == "-" and sys.stdin is None:  # started with stdin closed (`<&-`)
        raise ProfileError("cannot read DATA - from stdin: stdin is closed")
    with tempfile.TemporaryDirectory(prefix="inferwatch-profile-") as folder:
        copy = os.path.join(folder, "data")
        try:
            with (open(sys.stdin.fileno(), "rb", closefd=False) if path == "-" else
                  open(path, "rb")) as source, open(copy, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
        except OSError as exc:
            where = "stdin" if path == "-" else path
            raise ProfileError(f"cannot copy {where} to a temporary file in {folder}:"
                               f" {exc.strerror or exc}") from None
        yield copy



def read_csv(path: str, progress: Progress, *,
             text_columns: set[str] | frozenset[str] = frozenset(),
             name: str | None = None,
             integer_columns: set[str] | None = None,
             refuse_overflow: bool = False,
             category_keys: bool = False) -> dict[str, Any]:
    """Columns of a CSV file with a header row: float arrays where every value is a number
    (as pandas reads one: ``1_000`` is text), object arrays of text (None for missing)
    otherwise and for `text_columns`, each cell as written.

    With `category_keys`, a column of `text_columns` whose every cell is a number or an
    ISO date-time holds them as the keys of the values they stand for
    (:func:`_category_texts`): categories that match the live values of the column.

    With `refuse_overflow`, a number too large for a float (``1e400``, which reads as
    infinity) in a numeric column is an error naming the column and its data row; else it
    is infinity, as pandas reads it.

    `integer_columns`, when given, names columns to look at as written; on return it keeps
    those read as numbers whose every number is written as an integer (``1``, not ``1.0``
    or ``1e3``): a model's integer labels, which a float array no longer tells from floats.

    Read a block of rows at a time, each block typed as it comes: the file's text is never
    held whole (a numeric cell costs 8 bytes, not a Python string). A column that turns
    out to hold text after blocks of numbers is read again, as text, in a second pass.
    `name` is the file as the user gave it, for messages (`path` may be a copy of a pipe).
    """
    import numpy as np

    shown = path if name is None else name
    try:
        blocks = _csv_blocks(path, progress, name=shown)
        header = [h.strip() for h in next(blocks)[0]]
        duplicates = sorted({h for h in header if header.count(h) > 1})
        if duplicates:
            raise ProfileError(f"{shown}: duplicate column names {duplicates}")
        looked_at = integer_columns or set()
        columns = [_Column(name in text_columns, integers=name in looked_at)
                   for name in header]
        rows = 0
        for block in blocks:
            rows += len(block)
            for column, cells in zip(columns, zip(*block)):
                column.add(cells, np)
        if not rows:
            raise ProfileError(f"{shown}: no data rows")
        again = [j for j, column in enumerate(columns) if column.read_again]
        if again:
            for block in _csv_blocks(path, progress, skip_header=True, name=shown):
                if any(len(row) != len(header) for row in block):
                    raise ProfileError(f"{shown}: the file changed while it was read")
                for j in again:
                    columns[j].add_text([row[j] for row in block], np)
    except OSError as exc:  # unreadable: permissions, a device, an I/O error
        raise ProfileError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    if integer_columns is not None:
        integer_columns.intersection_update(
            h for h, column in zip(header, columns) if column.numeric and column.integers)
    if refuse_overflow:
        for h, column in zip(header, columns):
            if column.numeric and column.overflow is not None:
                row, cell = column.overflow
                raise ProfileError(
                    f"{shown}: column {h!r}, data row {row}: {cell.strip()!r} is too large"
                    " for a 64-bit float (it would read as infinity); write it smaller, leave"
                    f" the column out (--ignore {flag_value(h)}), or profile it as"
                    f" categories (--categorical {flag_value(h)})")
    return {h: _category_texts(column.array(np), np)
            if category_keys and h in text_columns else column.array(np)
            for h, column in zip(header, columns)}


def csv_header(path: str, *, name: str | None = None) -> list[str]:
    """The column names of a CSV file's header row, as :func:`read_csv` reads them."""
    shown = path if name is None else name
    blocks = _csv_blocks(path, Progress("", enabled=False), name=shown)
    try:
        return [h.strip() for h in next(blocks)[0]]
    except OSError as exc:
        raise ProfileError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    finally:
        blocks.close()


# Cells per block of rows: the text of one block is all that is held as Python strings.
BLOCK_CELLS = 1 << 18
# Distinct values of a text column shared as one string each: categories repeat, ids do not.
SHARED_TEXTS = 1 << 16


class _Column:
    """One CSV column, typed block by block: numbers while every cell is one."""

    def __init__(self, text: bool, *, integers: bool = False) -> None:
        self.numeric = not text
        self.read_again = False  # numbers in earlier blocks, text in a later one
        self.parts: list[Any] = []
        self.shared: dict[str, str] | None = {}
        # Whether every number so far is written as an integer; looked at only when asked
        # (a Python pass over each cell).
        self.integers = integers
        self.rows = 0
        # The first number too large for a float: its data row and cell. An error only if
        # the column stays numeric (a later text cell makes it all text, as in pandas).
        self.overflow: tuple[int, str] | None = None

    def add(self, cells: tuple[str, ...], np: Any) -> None:
        first_row, self.rows = self.rows + 1, self.rows + len(cells)
        if self.read_again:
            return
        if self.numeric:
            numbers = _numbers(cells, np)
            if numbers is not None:
                if self.overflow is None:
                    at = _overflow(cells, numbers, np)
                    if at is not None:
                        self.overflow = (first_row + at, cells[at])
                self.parts.append(numbers)
                if self.integers:
                    self.integers = all(_INTEGER_TEXT.fullmatch(v) or v.strip() in
                                        MISSING_TOKENS for v in cells)
                return
            self.numeric = False
            if self.parts:  # their text is gone: the second pass reads the column again
                self.read_again, self.parts = True, []
                return
        self.add_text(cells, np)

    def add_text(self, cells: Any, np: Any) -> None:
        shared = self.shared
        cleaned = [None if v.strip() in MISSING_TOKENS else
                   v if shared is None else shared.setdefault(v, v) for v in cells]
        if shared is not None and len(shared) > SHARED_TEXTS:
            self.shared = None  # an id column: sharing would only add the dictionary
        # Kept as written here: codes such as "01234" stay themselves (_category_texts).
        self.parts.append(np.fromiter(cleaned, dtype=object, count=len(cleaned)))

    def array(self, np: Any) -> Any:
        values = self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)
        return values if self.numeric else _booleans(values, np)


def _booleans(values: Any, np: Any) -> Any:
    """A text column whose every value is true or false (any case, as Spark, DuckDB and SQL
    exports write them) as bools, as pandas reads it: kept as text, a live bool (the
    category ``True``) would be unseen in every row. Any other text leaves it as written.

    >>> import numpy as np
    >>> _booleans(np.array(["true", None, "FALSE"], dtype=object), np).tolist()
    [True, None, False]
    >>> _booleans(np.array(["true", "no"], dtype=object), np).tolist()
    ['true', 'no']
    """
    spellings: dict[Any, bool | None] = {}
    for v in values:  # stops at the first other text: an id column costs one look
        if v is None or v in spellings:
            continue
        word = v.strip().lower()
        if word not in ("true", "false"):
            return values
        spellings[v] = word == "true"
    if not spellings:
        return values
    spellings[None] = None
    return np.fromiter((spellings[v] for v in values), dtype=object, count=len(values))


def _numbers(cells: tuple[str, ...], np: Any) -> Any:
    """The cells as floats (NaN for a missing token), or None when one is not a number as
    pandas reads one (:data:`_CSV_NUMBER`).

    >>> import numpy as np
    >>> _numbers(("1", " 2.5", "", "-inf", "1e3"), np).tolist()
    [1.0, 2.5, nan, -inf, 1000.0]
    >>> _numbers(("1_000",), np), _numbers(("\u0661\u0662",), np), _numbers(("NAN",), np)
    (None, None, None)
    """
    plain = not "".join(cells).strip(_PLAIN_NUMBER_CHARACTERS)
    if plain:
        try:
            return np.array(cells, dtype=np.float64)
        except ValueError:
            pass  # an empty cell, or no number at all ("1e", "-")
    number = float if plain else _csv_float
    try:
        return np.array([np.nan if v.strip() in MISSING_TOKENS else number(v) for v in cells],
                        dtype=np.float64)
    except ValueError:
        return None


def _csv_float(cell: str) -> float:
    if _CSV_NUMBER.fullmatch(cell) is None:
        raise ValueError(cell)
    return float(cell)


def _overflow(cells: tuple[str, ...], numbers: Any, np: Any) -> int | None:
    """The index of the first cell written as a finite number that reads as infinity."""
    for at in np.flatnonzero(np.isinf(numbers)).tolist():
        if "inf" not in cells[at].lower():
            return at
    return None


def _category_texts(values: Any, np: Any) -> Any:
    """A text column as the categories of the values it stands for, as
    :func:`~inferwatch.quality.category_keys.category_key` keys live values: when every
    cell is a number, a float's text is its key (``10115.0``, as pandas writes an integer
    column with a gap, is ``10115``); when every cell is an ISO date or date-time, the
    instant's (``2024-01-01T10:30:00`` is ``2024-01-01 10:30:00``, as a Timestamp is keyed).
    Integers keep their text (``01234`` is a code written as text, the only way a CSV
    carries its zero), and so does any column holding other text, as pandas keeps it.

    >>> import numpy as np
    >>> _category_texts(np.array(["10115.0", None, "01234", "1e16"], dtype=object), np).tolist()
    ['10115', None, '01234', '1e+16']
    >>> _category_texts(np.array(["2024-01-01T10:30:00", "2024-01-02"], dtype=object),
    ...                 np).tolist()
    ['2024-01-01 10:30:00', '2024-01-02']
    >>> _category_texts(np.array(["2.0", "beta"], dtype=object), np).tolist()
    ['2.0', 'beta']
    """
    keys: dict[Any, str | None] = {}
    kind = ""
    for value in values:  # stops at the first other text: a column of names costs one look
        if value is None or value in keys:
            continue
        if not isinstance(value, str):
            return values  # booleans (:func:`_booleans`)
        key = _number_key(value) if kind != "time" else None
        if key is not None:
            kind = "number"
        elif kind != "number" and (key := _time_key(value)) is not None:
            kind = "time"
        else:
            return values
        keys[value] = key if key else None  # "" for a NaN spelling pandas reads as missing
    if all(key == value for value, key in keys.items()):
        return values
    keys[None] = None
    return np.fromiter((keys[v] for v in values), dtype=object, count=len(values))


def _number_key(cell: str) -> str | None:
    """The category key of a number cell ("" for NaN), None when the cell is no number."""
    if _CSV_NUMBER.fullmatch(cell) is None:
        return None
    if _INTEGER_TEXT.fullmatch(cell):
        return cell
    from inferwatch.quality.category_keys import category_key

    number = float(cell)
    return "" if number != number else category_key(number)


def _time_key(cell: str) -> str | None:
    """The category key of an ISO date or date-time cell, None when the cell is no such."""
    import datetime

    import numpy as np

    from inferwatch.quality.category_keys import category_key

    text = cell.strip()
    try:
        instant = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if instant.tzinfo is None:
        try:
            # numpy keeps what a datetime drops: nanoseconds, which a Timestamp keeps.
            return category_key(np.datetime64(text))
        except ValueError:  # a form numpy does not read ("20240101T1030")
            pass
    return category_key(instant)


def _csv_blocks(path: str, progress: Progress, *, skip_header: bool = False,
                name: str | None = None) -> Iterator[list[list[str]]]:
    """The header row alone (unless `skip_header`), then the non-empty data rows in blocks
    of about BLOCK_CELLS cells; a row whose number of fields is not the header's is an
    error naming its line."""
    import csv
    import lzma
    import zlib

    shown = path if name is None else name
    total = os.path.getsize(path)
    with open(path, "rb") as raw:
        compression = _compression(raw)
        data = _uncompressed(raw, shown)
        encoding = "utf-8-sig"
        rows = 0
        try:
            encoding = _encoding(data)  # reads the first bytes: a .gz cut short fails here
            # newline="" as the csv module asks: a line may end in \n, \r\n or a lone \r
            # (a spreadsheet's "CSV (Macintosh)" export), and a quoted cell keeps its own.
            text = io.TextIOWrapper(data, encoding=encoding, newline="")
            # strict: a quote never closed is an error, not the rest of the file read as
            # one cell and every row after it silently lost.
            reader = csv.reader(_progress_lines(text, raw.tell, total, progress),
                                strict=True)
            # Blank lines before the header (an export that starts with one) read as rows
            # of no fields: the header is the first row that has any.
            header = next((row for row in reader if row), None)
            if header is None:
                raise ProfileError(f"{shown}: empty file (expected a header row)")
            _refuse_other_separators(shown, header)
            if not skip_header:
                yield [header]
            width = len(header)
            size = max(1, BLOCK_CELLS // width)
            block: list[list[str]] = []
            for row in reader:
                if row:
                    rows += 1
                    if len(row) != width:
                        raise ProfileError(
                            f"{shown}: data row {rows} has {len(row)} fields, expected"
                            f" {width} (line {reader.line_num})")
                    block.append(row)
                    if len(block) == size:
                        yield block
                        block = []
            if block:
                yield block
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise ProfileError(
                    f"{shown}: line {reader.line_num}: the file ends inside a quoted field:"
                    f" a quote opened in data row {rows + 1} is never closed") from None
            raise ProfileError(f"{shown}: line {reader.line_num}: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ProfileError(_not_text(path, shown, encoding, exc)) from None
        except (EOFError, zlib.error, lzma.LZMAError) as exc:  # a truncated or damaged .gz
            raise ProfileError(f"{shown}: cannot read: damaged {compression} data: {exc}"
                               ) from None


def _encoding(data: IO[bytes]) -> str:
    """The text encoding a byte order mark names (UTF-16: what a spreadsheet saves as
    "Unicode text"), else UTF-8; the mark itself is not read as part of the header."""
    start = data.read(4)
    data.seek(0)
    if start.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "utf-32"
    if start.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    return "utf-8-sig"


def _not_text(path: str, shown: str, encoding: str, exc: UnicodeDecodeError) -> str:
    """The message for a file that is not text in `encoding`: the line of the first bad
    byte and how to convert it, or, for a Parquet file, the flag that reads it as one."""
    with open(path, "rb") as raw:
        data = _uncompressed(raw, shown)
        if data.read(4) == b"PAR1":
            return f"{shown}: a Parquet file, not CSV text: use --format parquet"
        if encoding != "utf-8-sig":
            return f"{shown}: not {encoding.upper()} text after its byte order mark: {exc.reason}"
        data.seek(0)
        for number, line in enumerate(data, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as bad:
                byte = line[bad.start:bad.start + 1]
                return (f"{shown}: line {number}: not UTF-8 text (byte 0x{byte.hex()});"
                        " inferwatch reads CSV as UTF-8 (or UTF-16 with a byte order mark):"
                        " convert it,"
                        f" for example iconv -f latin1 -t utf-8 {shown} > utf8.csv")
    return f"{shown}: not UTF-8 text: {exc.reason}"


def _uncompressed(raw: IO[bytes], shown: str = "DATA") -> IO[bytes]:
    """`raw`, or its decompressed content when it starts as gzip, bzip2 or xz data does (a
    ``.csv.gz`` export), whatever the file is called. zstd and zip data, which the standard
    library cannot read as a stream, are refused naming the command that can.

    >>> import gzip, io
    >>> _uncompressed(io.BytesIO(gzip.compress(b"a,b\\n1,2\\n"))).read()
    b'a,b\\n1,2\\n'
    >>> _uncompressed(io.BytesIO(b"a,b\\n")).read()
    b'a,b\\n'
    """
    kind = _compression(raw)
    if kind is None:
        return raw
    if kind == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bzip2":
        import bz2

        return bz2.BZ2File(raw)
    if kind == "xz":
        import lzma

        return lzma.LZMAFile(raw)
    tool = "unzip -p" if kind == "zip" else "zstd -dc"
    raise ProfileError(f"{shown}: {kind}-compressed data, which profile does not read (it"
                       f" reads gzip, bzip2 and xz): decompress it on the way in, for example"
                       f" {tool} {shown} | inferwatch profile - -o reference.json")


def _compression(raw: IO[bytes]) -> str | None:
    """The compression `raw`'s first bytes show (rewound after), None for plain data."""
    start = raw.read(10)
    raw.seek(0)
    if start.startswith(GZIP_MAGIC):
        return "gzip"
    for kind, magic in OTHER_MAGIC.items():
        if len(start) >= len(magic) and all(m == ord("?") or m == b
                                            for m, b in zip(magic, start)):
            return kind
    return None


def _refuse_other_separators(path: str, header: list[str]) -> None:
    """A header that reads as one column holding semicolons or tabs is a file separated by
    them (a spreadsheet export where the comma is the decimal mark, a TSV file): read as
    it is, it would give one feature named by the whole header line, and a reference that
    matches no live input.

    >>> _refuse_other_separators("t.csv", ["age", "city"])
    >>> try:
    ...     _refuse_other_separators("t.csv", ["age;city"])
    ... except ProfileError as exc:
    ...     print(str(exc).split("?")[0])
    t.csv: the header reads as one column, 'age;city': separated by semicolons
    """
    if len(header) != 1:
        return
    for separator, name, options in ((";", "semicolons", "sep=';', decimal=','"),
                                     ("\t", "tabs", "sep='\\t'")):
        if separator in header[0]:
            shown = header[0] if len(header[0]) <= 60 else header[0][:57] + "..."
            raise ProfileError(
                f"{path}: the header reads as one column, {shown!r}: separated by {name}?"
                " Only commas separate columns: convert it, for example with"
                f" pandas.read_csv(path, {options}).to_csv(out, index=False)")


def _progress_lines(lines: IO[str], position: Callable[[], int], total: int,
                    progress: Progress) -> Iterator[str]:
    # `position` is the offset in the file as stored: it measures progress against its
    # size when the lines are decompressed from it. Asking for it costs a system call, so
    # not on every line, and not at all without a bar.
    if not progress.enabled:
        yield from lines
        return
    for number, line in enumerate(lines):
        if not number % 256:
            progress.update(position(), total)
        yield line


def read_parquet(path: str, progress: Progress, *, name: str | None = None,
                 integer_columns: set[str] | None = None) -> dict[str, Any]:
    """Columns of a Parquet file, read batch by batch (pandas and pyarrow required);
    `name` is the file as the user gave it, for messages. `integer_columns`, when given,
    names columns to look at; on return it keeps those the file types as integers (one
    with a missing value reads back as floats)."""
    shown = path if name is None else name
    try:
        import pandas  # noqa: F401  (to_pandas below needs it)
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtra("reading Parquet needs pandas and pyarrow:"
                           " pip install 'inferwatch[parquet]'") from None
    try:
        parquet = pq.ParquetFile(path)
        total = parquet.metadata.num_rows
        batches = []
        done = 0
        for batch in parquet.iter_batches(batch_size=65_536):
            batches.append(batch)
            done += batch.num_rows
            progress.update(done, total)
        frame = pa.Table.from_batches(batches, schema=parquet.schema_arrow).to_pandas()
        # A pandas category column may come back as its bare values; the file's pandas
        # metadata still says it was one.
        category_typed = {str(c.get("name")) for c in
                          (parquet.schema_arrow.pandas_metadata or {}).get("columns", [])
                          if c.get("pandas_type") == "categorical"}
    except (pa.ArrowException, OSError) as exc:
        raise ProfileError(f"{shown}: cannot read as Parquet: {exc}") from None
    if integer_columns is not None:
        integer_columns.intersection_update(
            field.name for field in parquet.schema_arrow if pa.types.is_integer(field.type))
    if frame.empty:
        raise ProfileError(f"{shown}: no data rows")
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        raise ProfileError(f"{shown}: duplicate column names")
    from inferwatch.quality.input_columns import category_values, is_category_typed

    # A category column of numbers (a pandas category saved to Parquet) is categories, as
    # Reference.from_data profiles the frame itself; to_numpy() would give its bare numbers.
    return {n: category_values(frame[c])
            if is_category_typed(frame[c]) or n in category_typed else frame[c].to_numpy()
            for n, c in zip(names, frame.columns)}


class Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, label: str, *, enabled: bool, stream: IO[str] | None = None,
                 width: int = 30) -> None:
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._last = 0.0
        self._fraction = 0.0
        self._shown = False

    def update(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        self._fraction = min(done / total, 1.0)
        now = time.monotonic()
        if now - self._last >= 0.1:
            self._last = now
            self._draw()

    def close(self) -> None:
        if self.enabled and self._shown:
            self._fraction = 1.0
            self._draw()
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self) -> None:
        filled = int(self._fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {self._fraction:4.0%}")
        self.stream.flush()
        self._shown = True
