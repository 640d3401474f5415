"""`inferwatch profile DATA -o reference.json`: a reference profile from training data.

Reads CSV with the standard library (a column is numeric when every non-empty value
is a number as pandas reads one, boolean when every one is true or false in any case;
gzip-compressed or not; comma-separated only) and Parquet with pyarrow and pandas. Every
column except those given with ``--predictions-column``, ``--target`` or ``--ignore``
becomes a feature.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="inferwatch profile")
>>> add_arguments(parser)
>>> parser.parse_args(["train.csv", "-o", "ref.json", "--categorical", "a,b"]).categorical
['a,b']
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from inferwatch.catalogue import TASKS

# Values read as missing in CSV cells (as pandas reads them by default, a common subset).
MISSING_TOKENS = frozenset({"", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "#N/A"})
# Without --progress, a bar appears only on a terminal and only for files at least this big.
PROGRESS_MIN_BYTES = 8 * 1024 * 1024
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
JSON_SUFFIXES = tuple(f"{suffix}{packed}" for suffix in (".json", ".jsonl", ".ndjson")
                      for packed in ("", ".gz", ".bz2", ".xz"))
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `profile` options to `parser`."""
    parser.add_argument("data", metavar="DATA",
                        help="training data: a .csv (or gzip-compressed .csv.gz) or .parquet"
                             " file")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="where to write the reference profile (JSON); - for stdout")
    parser.add_argument("--categorical", action="append", default=[], metavar="COLS",
                        help="comma-separated columns to profile as categories even if numeric"
                             " (repeatable; a name holding a comma: the whole value, or a\\,b)")
    parser.add_argument("--predictions-column", action="append", default=[], metavar="COL",
                        help="a column holding model predictions (repeatable, or comma-separated)")
    parser.add_argument("--target", default=None, metavar="COL",
                        help="the column of true labels (or values): the predictions are "
                             "scored on it and the score kept in the reference for the "
                             "accuracy alert; never profiled as a feature")
    parser.add_argument("--task", choices=TASKS, default="auto",
                        help="the model's task, as instrument()'s task option: how --target"
                             " scores the predictions (auto: floats are a regressor's values,"
                             " whole numbers written without a decimal point a classifier's"
                             " labels; default auto)")
    parser.add_argument("--ignore", action="append", default=[], metavar="COLS",
                        help="comma-separated columns to leave out (ids, labels)")
    parser.add_argument("--bins", type=_bin_count, default=10,
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


def json_refusal(path: str, command: str) -> str | None:
    """The error for a DATA file named as JSON, which the CLIs do not read; None for any
    other name. Read as CSV, each JSON line would be a row of cells named like no feature:
    a reference of nonsense categories, or a report of nothing but missing columns, and
    exit status 0.

    >>> json_refusal("rows.csv", "profile") is None
    True
    >>> json_refusal("rows.jsonl.gz", "profile").startswith("DATA rows.jsonl.gz is JSON")
    True
    """
    if not path.lower().endswith(JSON_SUFFIXES):
        return None
    return (f"DATA {path} is JSON, which {command} does not read: give a CSV or Parquet file "
            "(for example pandas.read_json(path, lines=True).to_parquet('rows.parquet'))")


def _run(args: argparse.Namespace) -> int:
    from inferwatch.quality.reference import Reference, ReferenceError

    path = args.data
    _refuse_blank_flags(args)
    refusal = None if args.format else json_refusal(path, "profile")
    if refusal is not None:
        raise ProfileError(refusal)
    _check_output(path, args.output)
    fmt = args.format or ("parquet" if path.lower().endswith(PARQUET_SUFFIXES) else "csv")
    with _seekable_copy(path) as readable:
        size = os.path.getsize(readable)
        show = args.progress or (sys.stderr.isatty() and size >= PROGRESS_MIN_BYTES)
        progress = Progress(f"reading {os.path.basename(path)}", enabled=show)
        written_as_integers: set[str] = set()
        # The prediction columns are looked at as the file types them: a CSV reads ints
        # and floats as floats, Parquet an int column with a gap as floats, and the task
        # rule tells a classifier's integer labels from a regressor's values.
        if fmt == "parquet":
            written_as_integers.update(
                _split(args.predictions_column, flag="--predictions-column"))
            columns = read_parquet(readable, progress, name=path,
                                   integer_columns=written_as_integers)
        else:
            # The header first: whether "a,b" names one column or two depends on it.
            header = csv_header(readable, name=path)
            text = _column_list(args.categorical, header, "--categorical")
            written_as_integers.update(
                _split(args.predictions_column, header, "--predictions-column"))
            columns = read_csv(readable, progress, text_columns=set(text), name=path,
                               integer_columns=written_as_integers, refuse_overflow=True,
                               category_keys=True)
        progress.close()

    names = list(columns)
    _refuse_unnamed(path, names, csv=fmt == "csv")
    ignored = _column_list(args.ignore, names, "--ignore")
    outputs = _column_list(args.predictions_column, names, "--predictions-column")
    categorical = _column_list(args.categorical, names, "--categorical")
    target = _column_list([] if args.target is None else [args.target], names, "--target")
    if target and not outputs:
        raise ProfileError("--target needs --predictions-column: the score compares the "
                           "predictions with the target")
    if set(target) & set(outputs):
        raise ProfileError(f"--target {target[0]!r} is also a --predictions-column")
    if args.task != "auto" and not target:
        raise ProfileError("--task needs --target: the task says how the predictions are "
                           "scored against the target, and nothing else")
    features = {n: columns[n] for n in names
                if n not in set(ignored) | set(outputs) | set(target)}
    if not features:
        raise ProfileError(f"{path}: no feature columns left to profile")
    if fmt == "csv":
        for name, column in features.items():
            if name not in categorical:
                _refuse_dates(path, name, column)
    for name in [*features, *outputs, *target]:
        _refuse_nested(path, name, columns[name])
    predictions = {n: columns[n] for n in outputs}
    try:
        reference = Reference.from_data(
            features, predictions=predictions or None,
            categorical=[n for n in categorical if n in features or n in outputs],
            bins=args.bins, max_categories=args.max_categories)
    except ReferenceError as exc:
        raise ProfileError(str(exc)) from None
    if target:
        task = args.task
        if task == "auto" and len(outputs) == 1 and outputs[0] in written_as_integers:
            task = "classification"  # integers: labels, as a model's integer predict is read
        reference.validation = _validation(predictions, target[0], columns[target[0]], task)
    to_stdout = args.output == "-"
    if to_stdout:
        try:
            if sys.stdout is None:  # closed while DATA was read: checked before too
                raise OSError(errno.EBADF, "stdout is closed")
            sys.stdout.write(reference.to_json())
            sys.stdout.flush()
        except BrokenPipeError:
            raise  # `-o - | head`: the reader left; ends quietly, as in every command
        except OSError as exc:  # `> /dev/full`
            raise ProfileError(f"cannot write -: {exc.strerror or exc}") from None
    else:
        if os.path.isdir(args.output):  # else the OS's word for it is "Device or resource busy"
            raise ProfileError(f"cannot write {args.output}: it is a directory")
        try:
            reference.save(args.output)
        except OSError as exc:
            raise ProfileError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    n_categorical = sum(1 for p in reference.features.values() if not p.is_numeric)
    where = "the reference to stdout" if to_stdout else args.output
    summary = (f"wrote {where}: {reference.rows} rows, {len(reference.features)} features"
               f" ({n_categorical} categorical), {len(reference.outputs)} prediction outputs"
               + ("" if reference.validation is None else
                  f", validation {reference.validation.metric}"
                  f" {reference.validation.value:.4g}"))
    if to_stdout:
        print(summary, file=sys.stderr)
        return 0
    # With stdout closed (`>&-`) print writes nothing, which is fine: the summary is only
    # for a reader. A full one (`> /dev/full`) is told, naming stdout, not the reference.
    try:
        print(summary)
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise ProfileError(f"wrote {args.output} but cannot print its summary on stdout:"
                           f" {exc.strerror or exc}") from None
    return 0


def _validation(predictions: dict[str, Any], target: str, labels: Any, task: str) -> Any:
    """The score of the prediction columns on the `target` column, its problems named by
    the flags that set them: a CSV has no ``prediction_names``, its header names the
    probability columns."""
    from inferwatch.quality.validation import (
        ClassNamesError,
        DisjointLabelsError,
        ValidationError,
        score,
    )

    try:
        return score(predictions, labels, task)
    except DisjointLabelsError as exc:
        shown, labels = (", ".join(map(repr, part)) for part in (exc.predicted, exc.labels))
        raise ProfileError(
            f"--predictions-column {next(iter(predictions))!r} holds labels such as {shown}"
            f" and --target {target!r} labels such as {labels}: no prediction is ever one of"
            " the labels, so the accuracy would be 0 and the accuracy alert could never"
            " fire; write both columns in the same classes (decode the encoded one)"
            ) from None
    except ClassNamesError as exc:
        shown, labels = (", ".join(map(repr, part)) for part in (exc.names, exc.labels))
        raise ProfileError(
            f"--predictions-column {shown}: read as class probabilities, the predicted"
            f" class being the name of the top column, but --target {target!r} holds labels"
            f" such as {labels} that name none of them correctly: name each column by its"
            " class in the header (0, 1 or the labels), or give one column of predicted"
            " labels") from None
    except ValidationError as exc:
        raise ProfileError(f"--target {target!r}: {exc}") from None


def _check_output(data: str, output: str) -> None:
    """Refuse, before the (long) read of DATA, an output that cannot be written: one in a
    folder that does not exist, a directory, or DATA itself, which the reference would
    replace, losing the training data."""
    if output == "-":
        if sys.stdout is None:  # started with stdout closed (`>&-`)
            raise ProfileError("cannot write -: stdout is closed")
        return
    if os.path.isdir(output):  # else the OS's word for it is "Device or resource busy"
        raise ProfileError(f"cannot write {output}: it is a directory")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        why = "is not a directory" if os.path.exists(folder) else "does not exist"
        raise ProfileError(f"cannot write {output}: No such file or directory ({folder}"
                           f" {why})")
    if data != "-" and os.path.exists(output) and os.path.exists(data) \
            and os.path.samefile(data, output):
        raise ProfileError(f"-o {output} is the DATA file: the reference would replace the"
                           " training data; write it to another file")


@contextlib.contextmanager
def _seekable_copy(path: str) -> Iterator[str]:
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


def _refuse_nested(path: str, name: str, column: Any) -> None:
    """A column of lists, arrays or structs (Parquet ``list<...>``, ``struct<...>``, an
    embedding) is not one value a row: profiled as categories of their text, its
    categories would be numpy's spelling of each array, which no live value matches.

    >>> import numpy as np
    >>> _refuse_nested("t.parquet", "city", np.array(["Oslo", None], dtype=object))
    >>> try:
    ...     _refuse_nested("t.parquet", "emb", np.array([None, np.zeros(2)], dtype=object))
    ... except ProfileError as exc:
    ...     "--ignore emb" in str(exc)
    True
    """
    if getattr(column, "dtype", None) is None or column.dtype.kind != "O":
        return
    from inferwatch.quality.category_keys import is_missing
    from inferwatch.quality.profiling import first_nested

    # Every row: a column whose first values are text or numbers may hold lists later on.
    row = first_nested(column)
    if row is None:
        return
    value = column[row]
    kind = "structs" if isinstance(value, dict) else "lists"
    first_present = next(i for i, v in enumerate(column) if not is_missing(v))
    # A column nested from its first value is one of lists; a later one needs finding.
    where = "" if row == first_present else f" (data row {row + 1} holds one)"
    raise ProfileError(
        f"{path}: column {name!r} holds {kind}, not one value a row{where}; flatten it into"
        f" one column a field (a feature each), or leave it out"
        f" (--ignore {_flag_value(name)})")


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
        if not isinstance(value, str):
            if value is None:
                continue
            return  # booleans (:func:`_booleans`)
        if value in seen:
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
            f" leave it out (--ignore {_flag_value(name)}), convert it to the number the"
            f" model uses (epoch seconds, hour of day, age in days), or profile it as text"
            f" (--categorical {_flag_value(name)})")


def _flag_value(name: str) -> str:
    r"""A column name as a flag's value in a hint: quoted as the shell takes it, or as repr
    when it holds what a terminal would act on (line breaks, escape sequences).

    >>> print(_flag_value("age"), _flag_value("sign-up day"), _flag_value("y\x1b[2J"))
    age 'sign-up day' 'y\x1b[2J'
    """
    return shlex.quote(name) if name.isprintable() else repr(name)


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


def _refuse_blank_flags(args: argparse.Namespace) -> None:
    """Refuse a column flag given a blank value, before the (long) read of DATA: an unset
    shell variable (``--target "$LABEL"``) read as no flag at all made the label a feature
    and left the reference without its validation score, with exit status 0."""
    given = [("--target", [] if args.target is None else [args.target]),
             ("--predictions-column", args.predictions_column),
             ("--categorical", args.categorical), ("--ignore", args.ignore)]
    for flag, values in given:
        if any(not value.strip() for value in values):
            raise ProfileError(f"{flag} is empty; give a column name, or leave the flag out")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _bin_count(text: str) -> int:
    from inferwatch.quality.profiling import MAX_BINS  # numpy: only once profiling

    value = _positive_int(text)
    if value > MAX_BINS:
        raise argparse.ArgumentTypeError(
            f"at most {MAX_BINS} bins, got {text!r}: each is an edge in the reference and a"
            " bucket of every drift check")
    return value


_UNESCAPED_COMMA = re.compile(r"(?<!\\),")


def _split(values: list[str], known: list[str] | None = None, flag: str = "") -> list[str]:
    r"""Column names from repeated, comma-separated flag values. A column whose name holds
    a comma is named by the whole value when that is its name (``--categorical "a,b"``), or
    with the comma escaped (``a\,b``), which also serves a list naming it beside others.

    >>> _split(["a,b", "c"]), _split(["x\\,y,z"]), _split(["a,b"], known=["a,b", "a"])
    (['a', 'b', 'c'], ['x,y', 'z'], ['a,b'])
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


def _column_list(values: list[str], known: list[str], flag: str) -> list[str]:
    names = _split(values, known, flag)
    unknown = [n for n in names if n not in set(known)]
    if unknown:
        # The file's names as repr: a header may hold line breaks or terminal escapes.
        shown = ", ".join(map(repr, known[:20])) + (", ..." if len(known) > 20 else "")
        raise ProfileError(f"unknown column {unknown[0]!r} in {flag} (columns: {shown})")
    return list(dict.fromkeys(names))


# --- reading --------------------------------------------------------------------------------

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
                    f" the column out (--ignore {_flag_value(h)}), or profile it as"
                    f" categories (--categorical {_flag_value(h)})")
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
