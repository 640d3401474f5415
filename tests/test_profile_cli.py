"""`inferwatch profile`: CSV and Parquet in, the same reference as the Python API out."""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.quality import data_files, profile_cli
from inferwatch.quality.reference import Reference


def run_profile(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inferwatch profile")
    profile_cli.add_arguments(parser)
    return profile_cli.run(parser.parse_args(argv))


@pytest.fixture()
def training(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({
        "age": rng.integers(18, 90, n).astype(float),
        "income": rng.lognormal(10, 1, n),
        "city": rng.choice(["Berlin", "Paris", "Rome"], n),
        "zip": rng.choice([10115, 75001], n),
        "customer_id": np.arange(n),
        "score": rng.random(n),
    })
    frame.loc[::10, "income"] = np.nan
    frame.loc[::7, "city"] = None
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    return frame, path


def expected_reference(frame: pd.DataFrame) -> Reference:
    features = frame.drop(columns=["score", "customer_id"])
    return Reference.from_data(features, predictions={"score": frame["score"].to_numpy()},
                               categorical=["zip"], bins=5)


def test_csv_profile_equals_the_python_api(training, tmp_path, capsys):
    frame, path = training
    out = tmp_path / "reference.json"
    status = run_profile([str(path), "-o", str(out), "--categorical", "zip", "--bins", "5",
                          "--predictions-column", "score", "--ignore", "customer_id"])
    assert status == 0
    written = Reference.load(out)
    assert written == expected_reference(frame)
    assert written.features["income"].missing_rate == pytest.approx(0.1)
    assert written.features["city"].kind == "categorical"
    assert f"wrote {out}: 400 rows, 4 features (2 categorical), 1 prediction outputs" in \
        capsys.readouterr().out


def test_parquet_profile_equals_the_csv_profile(training, tmp_path):
    frame, csv_path = training
    parquet_path = tmp_path / "train.parquet"
    frame.to_parquet(parquet_path)
    args = ["--categorical", "zip", "--bins", "5", "--predictions-column", "score",
            "--ignore", "customer_id"]
    assert run_profile([str(csv_path), "-o", str(tmp_path / "a.json"), *args]) == 0
    assert run_profile([str(parquet_path), "-o", str(tmp_path / "b.json"), *args]) == 0
    assert Reference.load(tmp_path / "a.json") == Reference.load(tmp_path / "b.json")


def test_missing_tokens_quoting_and_a_byte_order_mark(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_bytes('\ufeffx,label\n1.5,"a, b"\nNA,"multi\nline"\n3,\n'.encode())
    out = tmp_path / "r.json"
    assert run_profile([str(path), "-o", str(out)]) == 0
    ref = Reference.load(out)
    assert ref.feature_names == ["x", "label"]
    assert ref.features["x"].kind == "numeric" and ref.features["x"].missing_rate == 1 / 3
    assert set(ref.features["label"].categories) == {"a, b", "multi\nline", "__other__"}


def test_max_categories_and_categorical_prediction_columns(tmp_path):
    path = tmp_path / "cats.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["c", "pred"])
        for i in range(100):
            writer.writerow([f"v{i % 10}", i % 3])
    out = tmp_path / "r.json"
    assert run_profile([str(path), "-o", str(out), "--max-categories", "3",
                        "--predictions-column", "pred", "--categorical", "pred"]) == 0
    ref = Reference.load(out)
    assert len(ref.features["c"].categories) == 4
    assert ref.outputs["pred"].categories == ("0", "1", "2", "__other__")


@pytest.mark.parametrize(("argv", "message"), [
    (["{dir}/absent.csv"], "DATA file not found: {dir}/absent.csv"),
    (["{csv}", "--categorical", "age,nope"], "unknown column 'nope' in --categorical"),
    (["{csv}", "--predictions-column", "target"],
     "unknown column 'target' in --predictions-column"),
    (["{csv}", "--ignore", "age,income,city,zip,customer_id,score"], "no feature columns left"),
    (["{ragged}"], "{ragged}: data row 2 has 3 fields, expected 2"),
    (["{empty}"], "{empty}: empty file"),
    (["{header_only}"], "{header_only}: no data rows"),
    (["{csv}", "--format", "parquet"], "cannot read as Parquet"),
    (["{csv}", "-o", "{dir}/no/such/dir/r.json"], "cannot write {dir}/no/such/dir/r.json"),
])
def test_errors_name_the_problem_and_exit_2(training, tmp_path, capsys, argv, message):
    _, csv_path = training
    files = {"dir": str(tmp_path), "csv": str(csv_path)}
    for name, text in (("ragged", "a,b\n1,2\n1,2,3\n"), ("empty", ""), ("header_only", "a,b\n")):
        (tmp_path / f"{name}.csv").write_text(text)
        files[name] = str(tmp_path / f"{name}.csv")
    argv = [a.format(**files) for a in argv]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "r.json")]
    assert run_profile(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("inferwatch profile: error: ")
    assert message.format(**files) in err


def test_bad_bins_is_a_usage_error(training, tmp_path):
    _, path = training
    with pytest.raises(SystemExit) as info:
        run_profile([str(path), "-o", str(tmp_path / "r.json"), "--bins", "0"])
    assert info.value.code == 2


def test_parquet_without_pyarrow_says_what_to_install(training, tmp_path, monkeypatch, capsys):
    frame, _ = training
    path = tmp_path / "train.parquet"
    frame.to_parquet(path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    assert run_profile([str(path), "-o", str(tmp_path / "r.json")]) == 2
    assert "pip install 'inferwatch[parquet]'" in capsys.readouterr().err


def test_report_on_parquet_without_pyarrow_says_what_to_install(training, tmp_path,
                                                                 monkeypatch, capsys):
    # The same line as `profile`'s: it read "cannot read reading Parquet needs ...".
    from inferwatch.cli import main

    frame, csv_path = training
    reference = tmp_path / "reference.json"
    assert run_profile([str(csv_path), "-o", str(reference)]) == 0
    live = tmp_path / "live.parquet"
    frame.to_parquet(live)
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    assert main(["report", "--reference", str(reference), str(live),
                 "-o", str(tmp_path / "report.html")]) == 2
    assert capsys.readouterr().err == ("inferwatch report: error: reading Parquet needs pandas "
                                       "and pyarrow: pip install 'inferwatch[parquet]'\n")


def test_progress_bar_on_request(training, tmp_path, capsys):
    _, path = training
    assert run_profile([str(path), "-o", str(tmp_path / "r.json"), "--progress"]) == 0
    err = capsys.readouterr().err
    assert "reading train.csv [" in err and "100%" in err and err.endswith("\n")


def test_progress_bar_is_silent_when_disabled():
    stream = io.StringIO()
    bar = data_files.Progress("x", enabled=False, stream=stream)
    bar.update(5, 10)
    bar.close()
    assert stream.getvalue() == ""


def test_registered_subcommand_runs_through_the_inferwatch_command(training, tmp_path):
    _, path = training
    out = tmp_path / "r.json"
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from inferwatch.cli import main;"
         " sys.exit(main(sys.argv[1:]))", "profile", str(path), "-o", str(out)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert Reference.load(out).rows == 400


def test_importing_the_subcommand_loads_no_heavy_modules():
    code = ("import sys, inferwatch.quality.profile_cli; "
            "print(sorted(m for m in ('pandas', 'pyarrow', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize(("write", "message"), [
    (lambda path: pd.DataFrame({"age": np.arange(50.0), "country": ["de", "fr"] * 25})
     .to_csv(path),
     "column 1 of 3 has no name: a DataFrame written with its index?"),
    (lambda path: path.write_text("age,country,\n1,de,\n2,fr,\n"),
     "column 3 of 3 has no name: a trailing comma in the header?"),
    (lambda path: path.write_text("age,,country\n1,2,de\n"), "column 2 of 3 has no name"),
])
def test_a_column_without_a_name_is_refused_on_one_line(tmp_path, capsys, write, message):
    # A reference file names every profile: writing one with an empty name gave a file that
    # no loader accepts.
    data, out = tmp_path / "train.csv", tmp_path / "reference.json"
    write(data)
    assert run_profile([str(data), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"inferwatch profile: error: {data}: {message}")
    assert err.count("\n") == 1
    assert not out.exists()


def test_an_unreadable_file_is_a_one_line_error(training, tmp_path, capsys, monkeypatch):
    _, path = training

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(data_files, "open", refused, raising=False)
    assert run_profile([str(path), "-o", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err == f"inferwatch profile: error: {path}: cannot read: Permission denied\n"


def test_an_output_path_naming_a_directory_leaves_nothing_behind(training, tmp_path, capsys):
    _, path = training
    out = tmp_path / "out"
    out.mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert run_profile([str(path), "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"inferwatch profile: error: cannot write {out}: it is" \
                                      " a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert list(out.iterdir()) == []


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=4), min_size=1, max_size=4))
def test_whatever_profile_writes_loads(tmp_path, header):
    data, out = tmp_path / "any.csv", tmp_path / "any.json"
    out.unlink(missing_ok=True)
    with data.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([[str(i + j) for j in range(len(header))] for i in range(3)])
    if run_profile([str(data), "-o", str(out)]) == 0:
        assert Reference.load(out).rows == 3
    else:
        assert not out.exists()
