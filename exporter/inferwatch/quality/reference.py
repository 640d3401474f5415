"""Reference profiles: what the training data looked like, binned for drift and quality checks.

A :class:`Reference` holds one :class:`Profile` per input feature and per prediction output.
Numeric profiles keep quantile bin edges, the fraction of rows in each bin, the range and the
missing rate; categorical profiles keep the most frequent categories (the rest fold into
``__other__``). Profiles are built once, offline, and saved as versioned JSON.

>>> import numpy as np
>>> ref = Reference.from_data({"age": np.arange(100.0), "colour": ["red", "blue"] * 50},
...                           predictions=np.linspace(0, 1, 100), bins=4)
>>> ref.feature_names
['age', 'colour']
>>> ref.features["age"].edges
(25.0, 50.0, 75.0)
>>> ref.features["colour"].categories
('blue', 'red', '__other__')
>>> ref.outputs["value"].kind
'numeric'

The parts apart: :mod:`~inferwatch.quality.input_columns` reads the data into named columns,
:mod:`~inferwatch.quality.profiling` profiles each one, :mod:`~inferwatch.quality.profile`
holds a profile and reads a saved one back; this module gathers them into a reference.
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import re
import secrets
import stat
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from inferwatch.quality import input_columns
from inferwatch.quality.profile import Profile, ReferenceError, profile_from_dict
from inferwatch.quality.profiling import profile_column, refuse_nested
from inferwatch.quality.validation import Validation, ValidationError, check_task, score

FORMAT = "inferwatch.reference"
VERSION = 1


# Lone surrogates cannot be encoded as UTF-8; a high one before a low one reads back from
# JSON as the single character the pair encodes.
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


class Reference:
    """Profiles of the features and prediction outputs of a model's training data."""

    def __init__(self, features: Mapping[str, Profile],
                 outputs: Mapping[str, Profile] | None = None, *, rows: int = 0,
                 validation: Validation | None = None) -> None:
        self.features: dict[str, Profile] = dict(features)
        self.outputs: dict[str, Profile] = dict(outputs or {})
        self.rows = rows
        self.validation = validation

    @property
    def feature_names(self) -> list[str]:
        return list(self.features)

    @property
    def output_names(self) -> list[str]:
        return list(self.outputs)

    @property
    def predictions(self) -> dict[str, Profile]:
        """The prediction output profiles (the same mapping as ``outputs``)."""
        return self.outputs

    @property
    def score_output(self) -> str | None:
        """The one output, where this reference profiled one class's probability, as a
        binary classifier's ``predict_proba(X)[:, 1]`` or a file's score column are:
        numbers within [0, 1], some of them not whole (labels 0 and 1 are whole). Live,
        it is compared with the second column of a two-class probability matrix.

        >>> Reference.from_data([[0], [1], [2]], predictions=[0.2, 0.9, 0.4]).score_output
        'value'
        >>> Reference.from_data([[0], [1], [2]], predictions=[0, 1, 1]).score_output is None
        True
        """
        if len(self.outputs) != 1:
            return None
        name, profile = next(iter(self.outputs.items()))
        low, high = profile.min, profile.max
        if not profile.is_numeric or low is None or high is None or low < 0 or high > 1:
            return None
        return name if any(v % 1 for v in (*profile.edges, low, high)) else None

    def __repr__(self) -> str:
        scored = "" if self.validation is None else (
            f", validation {self.validation.metric} {self.validation.value:.4g}")
        return (f"Reference({len(self.features)} features, {len(self.outputs)} outputs,"
                f" {self.rows} rows{scored})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reference):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    # --- building -----------------------------------------------------------------------

    @classmethod
    def from_data(cls, X: Any, predictions: Any = None, *,
                  feature_names: Sequence[str] | None = None,
                  categorical: Iterable[str] | None = None, bins: int = 10,
                  max_categories: int = 50,
                  prediction_names: Sequence[str] | None = None,
                  y_true: Any = None, task: str = "auto") -> Reference:
        """Profile training (or validation) data.

        `X` is a 2-D array (columns are features; 1-D means one feature), a scipy.sparse
        matrix (its implicit entries are zeros), a pandas DataFrame, a dict of columns or a
        list of row dicts (columns by key, a key absent from a row a missing value). Column
        names are text (``str()``), as live inputs are matched; names that are one text
        (``0`` and ``"0"``) or empty, and columns of dates or times, are refused.
        `predictions` is a 1-D array or a single column, shape (n, 1) (one output named
        ``value``), a 2-D probability matrix (outputs named by `prediction_names` or column
        index), a list of one (n, k) probability matrix per output (a multi-output
        classifier's ``predict_proba``: outputs ``<output>:<column>``, or
        ``<output>:<class>`` with ``prediction_names=model.classes_``) or a dict of named
        outputs. A 2-D array of labels (integers, bools or text: a multi-output classifier's
        ``predict``) is profiled as the live side counts it, as the categories
        ``<output>:<label>`` of one ``value`` output.
        Columns of text, bool or object dtype, and features or outputs named in
        `categorical`, are profiled as categories; the rest get `bins` quantile bins.
        With `y_true`, the labels of these rows, the predictions are scored too
        (:mod:`inferwatch.quality.validation`: accuracy, or mean absolute error for a
        regressor), and the model exports the score for the accuracy alert to judge by.
        `task` is the model's, as given to ``instrument(task=...)``: the predictions are read
        as the live path reads them, so with ``"auto"`` floats are a regressor's values (a
        classifier whose ``predict`` returns ``0.0`` / ``1.0`` is scored by accuracy with
        ``task="classification"``, here and in ``instrument``).

        >>> Reference.from_data([[1], [2], [3], [4]], predictions=[1, 0, 1, 1],
        ...                     y_true=[1, 0, 0, 1]).validation.value
        0.75
        >>> Reference.from_data([[1], [2]], predictions=[1.0, 0.0], y_true=[1, 1],
        ...                     task="classification").validation.metric
        'accuracy'
        >>> ref = Reference.from_data([[1, "a"], [2, "b"], [3, "a"]], bins=2,
        ...                           feature_names=["n", "c"], categorical=["c"])
        >>> ref.features["c"].fractions
        (0.6666666666666666, 0.3333333333333333, 0.0)
        """
        bins = _positive_int(bins, "bins")
        max_categories = _positive_int(max_categories, "max_categories")
        try:
            check_task(task)
        except ValidationError as exc:
            raise ReferenceError(str(exc)) from None
        feature_names, prediction_names, categorical = (
            _name_list(v) for v in (feature_names, prediction_names, categorical))
        columns = input_columns.columns(X, feature_names, default_prefix="x", what="X")
        out_cols: dict[str, np.ndarray] = {}
        if input_columns.is_matrix_list(predictions):
            if y_true is not None:
                raise ReferenceError("y_true: a multi-output classifier's probabilities are not"
                                     " scored (its accuracy is kept neither here nor live):"
                                     " profile them without y_true")
            out_cols = input_columns.probability_list_columns(predictions, prediction_names)
        elif predictions is not None:
            out_cols = input_columns.columns(predictions, prediction_names, default_prefix="",
                                what="predictions", one_d_name="value")
        if not columns and not out_cols:
            # A reference of nothing checks nothing, while the model looks monitored (the
            # CLI refuses this too).
            raise ReferenceError("X has no columns and no predictions were given: nothing to"
                                 " profile (pass the features, predictions=, or both)")
        for what, group in (("X", columns), ("predictions", out_cols)):
            for name, col in group.items():
                refuse_nested(name, col, what)
        lengths = {len(c) for c in (*columns.values(), *out_cols.values())}
        if len(lengths) > 1:
            raise ReferenceError(f"predictions have {len(next(iter(out_cols.values())))} rows"
                                 f" but X has {len(next(iter(columns.values())))}")
        # As text, as the columns are named: a DataFrame's default column 3 is feature "3".
        forced = {str(name) for name in categorical or ()}
        unknown = forced - set(columns) - set(out_cols)
        if unknown:
            raise ReferenceError(f"categorical names unknown columns: {sorted(unknown)}"
                                 f" (features: {list(columns)}, outputs: {list(out_cols)})")
        live_outputs = input_columns.as_live_outputs(out_cols, task) \
            if input_columns.is_plain_matrix(predictions) else out_cols
        features = {name: profile_column(name, col, bins=bins, max_categories=max_categories,
                                         categorical=name in forced)
                    for name, col in columns.items()}
        # The labels gathered from a matrix's columns are categories whatever their type.
        outputs = {name: profile_column(name, col, bins=bins, max_categories=max_categories,
                                        categorical=name in forced or col is not out_cols.get(name))
                   for name, col in live_outputs.items()}
        # The predictions' rows, when the reference profiles only the outputs.
        rows = lengths.pop() if lengths else 0
        if rows == 0 and (columns or out_cols):
            # An empty frame (a filter that kept nothing): every profile would be empty,
            # and the reference would check nothing while the model looked monitored.
            raise ReferenceError("X has no rows: nothing to profile (an empty frame, or a"
                                 " filter that kept no row?)")
        validation = None
        if y_true is not None:
            if not out_cols:
                raise ReferenceError("y_true needs the predictions of the same rows, to score "
                                     "them: pass predictions= as well")
            try:
                validation = score(out_cols, y_true, task)
            except ValidationError as exc:
                raise ReferenceError(f"y_true: {exc}") from None
        return cls(features, outputs, rows=rows, validation=validation)

    # --- checking -----------------------------------------------------------------------

    def check_features(self, names: Iterable[str], *, ordered: bool = False) -> None:
        """Raise :class:`ReferenceError` unless `names` are this reference's features.

        >>> ref = Reference.from_data({"a": [1.0], "b": [2.0]})
        >>> ref.check_features(["b", "a"])
        >>> try:
        ...     ref.check_features(["a", "c"])
        ... except ReferenceError as exc:
        ...     print(exc)
        features do not match the reference: missing ['b']; not in the reference ['c']
        """
        given = [str(n) for n in names]
        missing = [n for n in self.features if n not in set(given)]
        extra = [n for n in given if n not in self.features]
        problems = []
        if missing:
            problems.append(f"missing {missing}")
        if extra:
            problems.append(f"not in the reference {extra}")
        if not problems and ordered and given != self.feature_names:
            problems.append(f"order differs: expected {self.feature_names}, got {given}")
        if problems:
            raise ReferenceError("features do not match the reference: " + "; ".join(problems))

    # --- reports ------------------------------------------------------------------------

    def compare(self, data: Any, predictions: Any = None, *, range_tolerance: float = 0.0,
                title: str | None = None) -> Any:
        """A drift report of `data` (DataFrame, column dict, row dicts or 2-D array) against
        this reference: features ranked by PSI with their distributions, quality counts and,
        given `predictions`, prediction drift. In Jupyter it renders itself; ``.save_html(path)``
        writes a self-contained HTML file (:mod:`inferwatch.report`, loaded only here).

        >>> ref = Reference.from_data({"amount": np.arange(500.0)})
        >>> report = ref.compare({"amount": np.arange(500.0) * 2})
        >>> report.features[0].name, "<svg" in report._repr_html_()
        ('amount', True)
        """
        from inferwatch.report.model import from_data

        return from_data(self, data, predictions, range_tolerance=range_tolerance, title=title)

    # --- files --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = {
            "format": FORMAT,
            "version": VERSION,
            "rows": self.rows,
            "features": [p.to_dict() for p in self.features.values()],
            "outputs": [p.to_dict() for p in self.outputs.values()],
        }
        if self.validation is not None:  # absent, not null: older files stay byte-identical
            data["validation"] = self.validation.to_dict()
        return data

    def to_json(self) -> str:
        """The text :meth:`save` writes: JSON, one newline at the end, deterministic.

        Text holding lone surrogates (bytes that were not UTF-8, read with
        ``errors="surrogateescape"``) is written with those escaped as ``\\udXXX``, so the
        file is UTF-8 and loads back the same text.

        >>> Reference.from_data({"a": [1.0, 2.0]}).to_json().endswith("}\\n")
        True
        >>> Reference.from_data({"a\\udcff": [1.0]}).to_json().count("a\\\\udcff")
        1
        """
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False, ensure_ascii=False) + "\n"
        if _SURROGATE.search(text) is None:
            return text
        for group in (self.features, self.outputs):
            for profile in group.values():
                for value in (profile.name, *profile.categories):
                    if _SURROGATE_PAIR.search(value):
                        # JSON reads an escaped pair back as the one character it encodes.
                        raise ReferenceError(
                            f"profile {profile.name!r}: the text {value!r} holds the two halves"
                            " of one character apart; JSON cannot keep them apart (decode"
                            " the data as UTF-8 first)")
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the reference as JSON (deterministic: the same data gives the same bytes).

        >>> import tempfile, os
        >>> ref = Reference.from_data({"a": [1.0, 2.0]})
        >>> path = os.path.join(tempfile.mkdtemp(), "reference.json")
        >>> ref.save(path); Reference.load(path) == ref
        True
        """
        text = self.to_json()
        path = os.fspath(path)
        if os.path.islink(path):
            # Written through, as editors do: a link into a shared or versioned store keeps
            # pointing there, and the replace stays atomic in the target's own directory.
            path = os.path.realpath(path)
        try:
            # The file replaced keeps its permissions: one made readable by a group only
            # (its categories may name customers) must not turn world-readable on a re-save.
            replaced: os.stat_result | None = os.stat(path)
        except OSError:
            replaced = None
        # A name of this call's own, created afresh (O_EXCL): two saves of one path at once
        # (parallel training jobs) would otherwise write one temporary file, and the second
        # replace find it gone; nor is a file of the user's named "<path>.tmp" overwritten.
        tmp = f"{path}.{secrets.token_hex(6)}.tmp"
        # Replacing a file, the temporary one is private from the start and takes the old
        # file's mode only once it holds what that file will hold: made with the umask's
        # mode, another user could open it while it was written and read the new content
        # of a file kept from them. A new file gets the umask's mode, as open() gives it.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL,  # O_EXCL follows no link
                     0o666 if replaced is None else 0o600)
        try:
            with open(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                if replaced is not None:
                    take_permissions(fd, replaced)
                # On disk before the rename: after a crash some file systems keep the rename
                # and lose the data, leaving an empty reference where a whole one was.
                os.fsync(fd)
            os.replace(tmp, path)
        except BaseException:
            # Only a file this call created is removed (a failed write, or a path naming a
            # directory): nothing is left beside the target.
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Reference:
        """Read a reference written by :meth:`save`; any problem is a :class:`ReferenceError`."""
        where = os.fspath(path)
        try:
            # utf-8-sig: an editor that saves UTF-8 with a byte-order mark (Windows
            # Notepad) leaves a file that is otherwise exactly what save() wrote.
            with open(where, encoding="utf-8-sig") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ReferenceError(f"{where}: reference file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ReferenceError(f"{where}: cannot read reference file: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ReferenceError(f"{where}: not valid JSON (line {exc.lineno}: {exc.msg})"
                                 ) from None
        except ValueError as exc:
            # Python refuses to parse an integer of more than 4,300 digits: no reference
            # holds one, and the message must still name the file.
            raise ReferenceError(f"{where}: not a reference file ({exc})") from None
        except RecursionError:
            raise ReferenceError(f"{where}: not a reference file (JSON nested too deeply)"
                                 ) from None
        return cls.from_dict(data, source=where)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "reference") -> Reference:
        """Build from the dict :meth:`to_dict` returns, validating every key."""
        if not isinstance(data, dict):
            raise ReferenceError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if "format" not in data:  # another tool's JSON: say what this file should be
            raise ReferenceError(f"{source}: not an inferwatch reference profile (it has no"
                                 " 'format' key; make one with `inferwatch profile` or"
                                 " Reference.from_data(...).save(path))")
        if data.get("format") != FORMAT:
            raise ReferenceError(f"{source}: key 'format' is {data.get('format')!r},"
                                 f" expected {FORMAT!r}")
        version = data.get("version")
        # True == 1 and 1.0 == 1 in Python: a hand-edited `true` or `1.0` is no version.
        if type(version) is not int or version != VERSION:
            raise ReferenceError(f"{source}: key 'version' is {data.get('version')!r}; this"
                                 f" inferwatch reads version {VERSION}"
                                 " (re-run `inferwatch profile`)")
        rows = data.get("rows", 0)
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise ReferenceError(f"{source}: key 'rows' must be a non-negative integer")
        if "features" not in data:
            # Without it every feature would go unchecked, and nothing would say so.
            raise ReferenceError(f"{source}: key 'features' is missing (expected a list of"
                                 " feature profiles; re-run `inferwatch profile`)")
        groups = {}
        for key in ("features", "outputs"):
            items = data.get(key, [])
            if not isinstance(items, list):
                raise ReferenceError(f"{source}: key {key!r} must be a list")
            profiles: dict[str, Profile] = {}
            for i, item in enumerate(items):
                profile = profile_from_dict(item, f"{source}: {key}[{i}]")
                if profile.name in profiles:
                    raise ReferenceError(f"{source}: {key}[{i}]: duplicate name {profile.name!r}")
                profiles[profile.name] = profile
            groups[key] = profiles
        validation = None
        if "validation" in data:
            try:
                validation = Validation.from_dict(data["validation"], f"{source}: validation")
            except ValidationError as exc:
                raise ReferenceError(str(exc)) from None
        return cls(groups["features"], groups["outputs"], rows=rows, validation=validation)


def _positive_int(value: Any, what: str) -> int:
    """`value` as an int when it is a whole number of 1 or more: a numpy integer
    (``np.int64(20)``, what arithmetic on array sizes gives) is one, a bool or 2.5 is not."""
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)) \
            or value < 1:
        raise ReferenceError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _name_list(names: Any) -> Any:
    """One name given as text is that name: ``categorical="country"`` must not name the
    columns ``c``, ``o``, ``u``, ... (nor profile columns ``a`` and ``b`` for ``"ab"``)."""
    return [names] if isinstance(names, str) else names


def take_permissions(fd: int, replaced: os.stat_result) -> None:
    """Give the open file `fd` the mode and, where this user may, the group of the file it
    will replace: the same mode under another group would hand the group's access to the
    saving user's own group."""
    if os.fstat(fd).st_gid != replaced.st_gid:
        with contextlib.suppress(OSError):  # not a member of that group: mode alone
            os.fchown(fd, -1, replaced.st_gid)
    os.fchmod(fd, stat.S_IMODE(replaced.st_mode))
