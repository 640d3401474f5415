"""`inferwatch profile DATA -o reference.json`: a reference profile from training data.

Reads CSV with the standard library (a column is numeric when every non-empty value
parses as a number; gzip-compressed or not; comma-separated only) and Parquet with pyarrow
and pandas. Every column except those given with ``--predictions-column``, ``--target`` or
``--ignore`` becomes a feature.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="inferwatch profile")
>>> add_arguments(parser)
>>> parser.parse_args(["train.csv", "-o", "ref.json", "--categorical", "a,b"]).categorical
['a,b']
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

# Values read as missing in CSV cells (as pandas reads them by default, a common subset).
MISSING_TOKENS = frozenset({"", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "#N/A"})
# Without --progress, a bar appears only on a terminal and only for files at least this big.
PROGRESS_MIN_BYTES = 8 * 1024 * 1024
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
# The first bytes of gzip data: a CSV file starting with them is read decompressed.
GZIP_MAGIC = b"\x1f\x8b"


class ProfileError(Exception):
    """A problem with the command's input: printed as one line, exit status 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `profile` options to `parser`."""
    parser.add_argument("data", metavar="DATA",
                        help="training data: a .csv (or gzip-compressed .csv.gz) or .parquet"
                             " file")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="where to write the reference profile (JSON); - for stdout")
    parser.add_argument("--categorical", action="append", default=[], metavar="COLS",
                        help="comma-separated columns to profile as categories even if numeric")
    parser.add_argument("--predictions-column", action="append", default=[], metavar="COL",
                        help="a column holding model predictions (repeatable, or comma-separated)")
    parser.add_argument("--target", default=None, metavar="COL",
                        help="the column of true labels (or values): the predictions are "
                             "scored on it and the score kept in the reference for the "
                             "accuracy alert; never profiled as a feature")
    parser.add_argument("--ignore", action="append", default=[], metavar="COLS",
                        help="comma-separated columns to leave out (ids, labels)")
    parser.add_argument("--bins", type=_positive_int, default=10,
                        help="quantile bins per numeric column (default 10)")
    parser.add_argument("--max-categories", type=_positive_int, default=50, metavar="N",
                        help="categories kept per column; the rest fold into __other__"
                             " (default 50)")
    parser.add_argument("--format", choices=("csv", "parquet"), default=None,
                        help="input format (default: from the file name)")
    parser.add_argument("--progress", action="store_true",
                        help="show a progress bar on stderr even when it is not a terminal")


def run(args: argparse.Namespace) -> int:
    """Profile `args.data` into `args.output`; 0 on success, 2 on a usage or input error."""
    try:
        return _run(args)
    except ProfileError as exc:
        print(f"inferwatch profile: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from inferwatch.quality.reference import Reference, ReferenceError

    path = args.data
    if not os.path.isfile(path):
        raise ProfileError(f"DATA file not found: {path}")
    fmt = args.format or ("parquet" if path.lower().endswith(PARQUET_SUFFIXES) else "csv")
    size = os.path.getsize(path)
    show = args.progress or (sys.stderr.isatty() and size >= PROGRESS_MIN_BYTES)
    progress = Progress(f"reading {os.path.basename(path)}", enabled=show)
    if fmt == "parquet":
        columns = read_parquet(path, progress)
    else:
        columns = read_csv(path, progress, text_columns=set(_split(args.categorical)))
    progress.close()

    names = list(columns)
    _refuse_unnamed(path, names, csv=fmt == "csv")
    ignored = _column_list(args.ignore, names, "--ignore")
    outputs = _column_list(args.predictions_column, names, "--predictions-column")
    categorical = _column_list(args.categorical, names, "--categorical")
    target = _column_list([args.target] if args.target else [], names, "--target")
    if target and not outputs:
        raise ProfileError("--target needs --predictions-column: the score compares the "
                           "predictions with the target")
    if set(target) & set(outputs):
        raise ProfileError(f"--target {target[0]!r} is also a --predictions-column")
    features = {n: columns[n] for n in names
                if n not in set(ignored) | set(outputs) | set(target)}
    if not features:
        raise ProfileError(f"{path}: no feature columns left to profile")
    if fmt == "csv":
        for name, column in features.items():
            if name not in categorical:
                _refuse_dates(path, name, column)
    try:
        reference = Reference.from_data(
            features, predictions={n: columns[n] for n in outputs} or None,
            categorical=[n for n in categorical if n in features or n in outputs],
            bins=args.bins, max_categories=args.max_categories,
            y_true=columns[target[0]] if target else None)
    except ReferenceError as exc:
        raise ProfileError(str(exc)) from None
    to_stdout = args.output == "-"
    if to_stdout:
        sys.stdout.write(reference.to_json())
        sys.stdout.flush()
    else:
        if os.path.isdir(args.output):  # else the OS's word for it is "Device or resource busy"
            raise ProfileError(f"cannot write {args.output}: it is a directory")
        try:
            reference.save(args.output)
        except OSError as exc:
            raise ProfileError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    n_categorical = sum(1 for p in reference.features.values() if not p.is_numeric)
    where = "the reference to stdout" if to_stdout else args.output
    print(f"wrote {where}: {reference.rows} rows, {len(reference.features)} features"
          f" ({n_categorical} categorical), {len(reference.outputs)} prediction outputs"
          + ("" if reference.validation is None else
             f", validation {reference.validation.metric} {reference.validation.value:.4g}"),
          file=sys.stderr if to_stdout else sys.stdout)
    return 0


# Distinct values looked at to tell a column of dates: enough to be sure, bounded for ids.
DATE_SAMPLE = 200


def _refuse_dates(path: str, name: str, column: Any) -> None:
    """A CSV column of ISO dates or date-times is refused, as a Parquet or pandas column of
    datetimes is: as categories every live date would be unseen (a ticket every day), and
    the number the model uses is not known here.

    >>> import numpy as np
    >>> _refuse_dates("t.csv", "city", np.array(["Oslo", None], dtype=object))
    >>> try:
    ...     _refuse_dates("t.csv", "day", np.array(["2024-01-05", None], dtype=object))
    ... except ProfileError as exc:
    ...     "holds dates" in str(exc), "--ignore day" in str(exc)
    (True, True)
    """
    import datetime

    if getattr(column, "dtype", None) is None or column.dtype.kind != "O":
        return
    seen: set[str] = set()
    for value in column:
        if value is None or value in seen:
            continue
        try:
            datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            return
        seen.add(value)
        if len(seen) >= DATE_SAMPLE:
            break
    if seen:
        raise ProfileError(
            f"{path}: column {name!r} holds dates or times (such as {next(iter(seen))!r});"
            f" leave it out (--ignore {name}), convert it to the number the model uses"
            f" (epoch seconds, hour of day, age in days), or profile it as text"
            f" (--categorical {name})")


def _refuse_unnamed(path: str, names: list[str], *, csv: bool) -> None:
    """A reference file names every profile, so a column without a name cannot be kept."""
    if "" not in names:
        return
    at = names.index("") + 1
    if csv and at == 1:
        hint = ("a DataFrame written with its index? Write it with to_csv(index=False), or"
                " name the column in the header")
    elif csv and at == len(names):
        hint = "a trailing comma in the header? Remove it, or name the column"
    else:
        hint = "name it, or leave it out of the file"
    raise ProfileError(f"{path}: column {at} of {len(names)} has no name: {hint}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _split(values: list[str]) -> list[str]:
    return [n.strip() for value in values for n in value.split(",") if n.strip()]


def _column_list(values: list[str], known: list[str], flag: str) -> list[str]:
    names = _split(values)
    unknown = [n for n in names if n not in set(known)]
    if unknown:
        shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        raise ProfileError(f"unknown column {unknown[0]!r} in {flag} (columns: {shown})")
    return list(dict.fromkeys(names))


# --- reading --------------------------------------------------------------------------------

def read_csv(path: str, progress: Progress, *,
             text_columns: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """Columns of a CSV file with a header row: float arrays where every value is a number,
    object arrays of text (None for missing) otherwise and for `text_columns`.

    Read a block of rows at a time, each block typed as it comes: the file's text is never
    held whole (a numeric cell costs 8 bytes, not a Python string). A column that turns
    out to hold text after blocks of numbers is read again, as text, in a second pass.
    """
    import numpy as np

    try:
        blocks = _csv_blocks(path, progress)
        header = [h.strip() for h in next(blocks)[0]]
        duplicates = sorted({h for h in header if header.count(h) > 1})
        if duplicates:
            raise ProfileError(f"{path}: duplicate column names {duplicates}")
        columns = [_Column(name in text_columns) for name in header]
        rows = 0
        for block in blocks:
            for i, row in enumerate(block):
                if len(row) != len(header):
                    raise ProfileError(f"{path}: data row {rows + i + 1} has {len(row)} fields,"
                                       f" expected {len(header)}")
            rows += len(block)
            for column, cells in zip(columns, zip(*block)):
                column.add(cells, np)
        if not rows:
            raise ProfileError(f"{path}: no data rows")
        again = [j for j, column in enumerate(columns) if column.read_again]
        if again:
            for block in _csv_blocks(path, progress, skip_header=True):
                if any(len(row) != len(header) for row in block):
                    raise ProfileError(f"{path}: the file changed while it was read")
                for j in again:
                    columns[j].add_text([row[j] for row in block], np)
    except OSError as exc:  # unreadable: permissions, a device, an I/O error
        raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return {name: column.array(np) for name, column in zip(header, columns)}


# Cells per block of rows: the text of one block is all that is held as Python strings.
BLOCK_CELLS = 1 << 18
# Distinct values of a text column shared as one string each: categories repeat, ids do not.
SHARED_TEXTS = 1 << 16


class _Column:
    """One CSV column, typed block by block: numbers while every cell is one."""

    def __init__(self, text: bool) -> None:
        self.numeric = not text
        self.read_again = False  # numbers in earlier blocks, text in a later one
        self.parts: list[Any] = []
        self.shared: dict[str, str] | None = {}

    def add(self, cells: tuple[str, ...], np: Any) -> None:
        if self.read_again:
            return
        if self.numeric:
            numbers = _numbers(cells, np)
            if numbers is not None:
                self.parts.append(numbers)
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
        # Kept as written: codes such as "01234" stay themselves.
        self.parts.append(np.fromiter(cleaned, dtype=object, count=len(cleaned)))

    def array(self, np: Any) -> Any:
        if len(self.parts) == 1:
            return self.parts[0]
        return np.concatenate(self.parts)


def _numbers(cells: tuple[str, ...], np: Any) -> Any:
    """The cells as floats (NaN for a missing token), or None when one is not a number."""
    try:
        return np.array(cells, dtype=np.float64)
    except ValueError:
        pass
    try:
        return np.array([np.nan if v.strip() in MISSING_TOKENS else float(v) for v in cells])
    except ValueError:
        return None


def _csv_blocks(path: str, progress: Progress, *, skip_header: bool = False
                ) -> Iterator[list[list[str]]]:
    """The header row alone (unless `skip_header`), then the non-empty data rows in blocks
    of about BLOCK_CELLS cells."""
    import csv
    import zlib

    total = os.path.getsize(path)
    with open(path, "rb") as raw:
        reader = csv.reader(_decoded_lines(_uncompressed(raw), raw.tell, total, progress))
        try:
            # Blank lines before the header (an export that starts with one) read as rows
            # of no fields: the header is the first row that has any.
            header = next((row for row in reader if row), None)
            if header is None:
                raise ProfileError(f"{path}: empty file (expected a header row)")
            _refuse_other_separators(path, header)
            if not skip_header:
                yield [header]
            size = max(1, BLOCK_CELLS // len(header))
            block: list[list[str]] = []
            for row in reader:
                if row:
                    block.append(row)
                    if len(block) == size:
                        yield block
                        block = []
            if block:
                yield block
        except csv.Error as exc:
            raise ProfileError(f"{path}: line {reader.line_num}: {exc}") from None
        except UnicodeDecodeError:
            raise ProfileError(f"{path}: not UTF-8 text (is it a Parquet file? use"
                               " --format parquet)") from None
        except (EOFError, zlib.error) as exc:  # a truncated or damaged .gz
            raise ProfileError(f"{path}: cannot read: damaged gzip data: {exc}") from None


def _uncompressed(raw: IO[bytes]) -> IO[bytes]:
    """`raw`, or its decompressed content when it starts as gzip data does (a ``.csv.gz``
    export), whatever the file is called.

    >>> import gzip, io
    >>> _uncompressed(io.BytesIO(gzip.compress(b"a,b\\n1,2\\n"))).read()
    b'a,b\\n1,2\\n'
    >>> _uncompressed(io.BytesIO(b"a,b\\n")).read()
    b'a,b\\n'
    """
    magic = raw.read(len(GZIP_MAGIC))
    raw.seek(0)
    if magic != GZIP_MAGIC:
        return raw
    import gzip

    return gzip.GzipFile(fileobj=raw, mode="rb")


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


def _decoded_lines(lines: IO[bytes], position: Callable[[], int], total: int,
                   progress: Progress) -> Iterator[str]:
    # `position` is the offset in the file as stored: it measures progress against its
    # size when the lines are decompressed from it.
    first = True
    for line in lines:
        progress.update(position(), total)
        text = line.decode("utf-8")
        if first:
            text = text.removeprefix("\ufeff")
            first = False
        yield text


def read_parquet(path: str, progress: Progress) -> dict[str, Any]:
    """Columns of a Parquet file, read batch by batch (pandas and pyarrow required)."""
    try:
        import pandas  # noqa: F401  (to_pandas below needs it)
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ProfileError("reading Parquet needs pandas and pyarrow:"
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
    except (pa.ArrowException, OSError) as exc:
        raise ProfileError(f"{path}: cannot read as Parquet: {exc}") from None
    if frame.empty:
        raise ProfileError(f"{path}: no data rows")
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        raise ProfileError(f"{path}: duplicate column names")
    return {name: frame[c].to_numpy() for name, c in zip(names, frame.columns)}


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
