"""`inferwatch profile DATA -o reference.json`: a reference profile from training data.

Reads CSV or Parquet (:mod:`inferwatch.quality.data_files`). Every column except those
given with ``--predictions-column``, ``--target`` or ``--ignore`` becomes a feature.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="inferwatch profile")
>>> add_arguments(parser)
>>> parser.parse_args(["train.csv", "-o", "ref.json", "--categorical", "a,b"]).categorical
['a,b']
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from typing import Any

from inferwatch.catalogue import TASKS
from inferwatch.quality.column_flags import column_list, split_columns
from inferwatch.quality.data_files import (
    PARQUET_SUFFIXES,
    ProfileError,
    Progress,
    csv_header,
    flag_value,
    read_csv,
    read_parquet,
    seekable_copy,
)

# Without --progress, a bar appears only on a terminal and only for files at least this big.
PROGRESS_MIN_BYTES = 8 * 1024 * 1024
JSON_SUFFIXES = tuple(f"{suffix}{packed}" for suffix in (".json", ".jsonl", ".ndjson")
                      for packed in ("", ".gz", ".bz2", ".xz"))


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
    with seekable_copy(path) as readable:
        size = os.path.getsize(readable)
        show = args.progress or (sys.stderr.isatty() and size >= PROGRESS_MIN_BYTES)
        progress = Progress(f"reading {os.path.basename(path)}", enabled=show)
        written_as_integers: set[str] = set()
        # The prediction columns are looked at as the file types them: a CSV reads ints
        # and floats as floats, Parquet an int column with a gap as floats, and the task
        # rule tells a classifier's integer labels from a regressor's values.
        if fmt == "parquet":
            written_as_integers.update(
                split_columns(args.predictions_column, flag="--predictions-column"))
            columns = read_parquet(readable, progress, name=path,
                                   integer_columns=written_as_integers)
        else:
            # The header first: whether "a,b" names one column or two depends on it.
            header = csv_header(readable, name=path)
            text = column_list(args.categorical, header, "--categorical")
            written_as_integers.update(
                split_columns(args.predictions_column, header, "--predictions-column"))
            columns = read_csv(readable, progress, text_columns=set(text), name=path,
                               integer_columns=written_as_integers, refuse_overflow=True,
                               category_keys=True)
        progress.close()

    names = list(columns)
    _refuse_unnamed(path, names, csv=fmt == "csv")
    ignored = column_list(args.ignore, names, "--ignore")
    outputs = column_list(args.predictions_column, names, "--predictions-column")
    categorical = column_list(args.categorical, names, "--categorical")
    target = column_list([] if args.target is None else [args.target], names, "--target")
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
        f" (--ignore {flag_value(name)})")


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
            return  # booleans (:func:`inferwatch.quality.data_files._booleans`)
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
            f" leave it out (--ignore {flag_value(name)}), convert it to the number the"
            f" model uses (epoch seconds, hour of day, age in days), or profile it as text"
            f" (--categorical {flag_value(name)})")


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
