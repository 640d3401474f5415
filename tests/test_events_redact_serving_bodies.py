"""Every shape a model's inputs arrive in (Python objects, pandas and polars frames, numpy
records, JSON text, and the request bodies of MLflow, KServe, Triton, Seldon and TF
Serving) with a rule naming one column: its value never reaches the written bytes, in
either format, under ``redact`` or ``hash_fields``. A fuzz of these shapes found five of
them written in clear; each new serving protocol belongs in this table."""

from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from event_lines import SECRET
from inferwatch.events import EventLog

SSN = 78051120


@dataclasses.dataclass
class _Record:
    amount: float
    ssn: int


_Row = collections.namedtuple("_Row", "amount ssn")
_FRAME = pd.DataFrame([[0.5, SSN + 1]], columns=["amount", "ssn"])
_RECORDS = _FRAME.to_dict("records")

# (the inputs, the path naming the secret column in them)
_BODIES = {
    "dict": ({"amount": 0.5, "ssn": SSN + 1}, "inputs.ssn"),
    "JSON text in JSON text": (json.dumps({"payload": json.dumps(_RECORDS[0])}), "inputs.ssn"),
    "UTF-8 JSON bytes": (json.dumps(_RECORDS[0]).encode(), "inputs.ssn"),
    "dataclass": (_Record(0.5, SSN + 1), "inputs.ssn"),
    "list of dataclasses": ([_Record(0.5, SSN + 1)], "inputs.ssn"),
    "namedtuple": (_Row(0.5, SSN + 1), "inputs.ssn"),
    "numpy records": (np.array([(0.5, SSN + 1)], dtype=[("amount", "f8"), ("ssn", "i8")]),
                      "inputs.ssn"),
    "MultiIndex columns, by their dotted path": (
        pd.DataFrame([[0.5, SSN + 1]], columns=pd.MultiIndex.from_tuples(
            [("x", "amount"), ("x", "ssn")])), "inputs.x.ssn"),
    "dotted key, by its path": ({"user.ssn": SSN + 1, "amount": 0.5}, "inputs.user.ssn"),
    "polars struct column": (pl.DataFrame({"row": [{"amount": 0.5, "ssn": SSN + 1}]}),
                             "inputs.row.ssn"),
    "polars frame": (pl.DataFrame({"amount": [0.5], "ssn": [SSN + 1]}), "inputs.ssn"),
    "pandas row": (_FRAME.iloc[0], "inputs.ssn"),
    "key in other case, width and spacing": ({" \uff33SN ": SSN + 1, "amount": 0.5},
                                             "inputs.ssn"),
    "records in a tuple": (({"ssn": SSN + 1, "amount": 0.5},), "inputs.ssn"),
    "records nested two levels": ({"request": {"body": {"dataframe_records": _RECORDS}}},
                                  "inputs.ssn"),
    "JSON records text": (_FRAME.to_json(orient="records"), "inputs.ssn"),
    "JSON index text": (_FRAME.to_json(orient="index"), "inputs.ssn"),
    "JSON columns text": (_FRAME.to_json(orient="columns"), "inputs.ssn"),
    "JSON table text": (_FRAME.to_json(orient="table"), "inputs.ssn"),
    "to_dict('tight')": (_FRAME.to_dict("tight"), "inputs.ssn"),
    "MLflow dataframe_split": ({"dataframe_split": _FRAME.to_dict("split")}, "inputs.ssn"),
    "MLflow dataframe_records": ({"dataframe_records": _RECORDS}, "inputs.ssn"),
    "MLflow inputs of columns": ({"inputs": _FRAME.to_dict("list")}, "inputs.ssn"),
    "TF Serving instances": ({"signature_name": "serving_default", "instances": _RECORDS},
                             "inputs.ssn"),
    "KServe v2 named tensors": ({"inputs": [
        {"name": "amount", "shape": [1], "datatype": "FP64", "data": [0.5]},
        {"name": "ssn", "shape": [1], "datatype": "INT64", "data": [SSN + 1]}]}, "inputs.ssn"),
    "Triton tensor with parameters": ({"inputs": [
        {"name": "SSN", "shape": [1], "datatype": "INT64", "parameters": {},
         "data": [SSN + 1]}]}, "inputs.ssn"),
    "Seldon ndarray": ({"data": {"names": ["amount", "ssn"], "ndarray": [[0.5, SSN + 1]]}},
                       "inputs.ssn"),
    "Seldon tensor": ({"data": {"names": ["amount", "ssn"], "tensor": {
        "shape": [1, 2], "values": [0.5, SSN + 1]}}}, "inputs.ssn"),
}


def _written(directory: Path, fmt: str, rules: dict, inputs: object) -> bytes:
    path = directory / ("events.db" if fmt == "sqlite" else "events.jsonl")
    log = EventLog(path, **rules)
    try:
        log.emit({"ts": 1.0, "request_id": "r", "inputs": inputs})
        assert log.flush(10)
    finally:
        log.close()
    return b"".join(part.read_bytes() for part in sorted(directory.iterdir()) if part.is_file())


@pytest.mark.parametrize("hashed", [False, True], ids=["redact", "hash"])
@pytest.mark.parametrize("fmt", ["jsonl", "sqlite"])
@pytest.mark.parametrize("shape", sorted(_BODIES))
def test_the_named_column_of_every_body_shape_never_reaches_the_log(tmp_path, shape, fmt,
                                                                    hashed):
    inputs, path = _BODIES[shape]
    rules = {"hash_fields": [path], "secret": SECRET} if hashed else {"redact": [path]}
    written = _written(tmp_path, fmt, rules, inputs)
    assert str(SSN + 1).encode() not in written
    assert written  # the event was written, its other fields kept or dropped whole
