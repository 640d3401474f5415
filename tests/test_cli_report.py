"""`inferwatch report` as a user meets it: the real command on files as they come."""

from __future__ import annotations

import csv
import resource
import subprocess

import numpy as np

from cli_pages import INFERWATCH, data_values
from inferwatch.quality.reference import Reference


def report(*argv: str, limit_file_bytes: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:  # in the child only: as a full disk, writes past this fail
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))

    return subprocess.run([*INFERWATCH, "report", *argv], capture_output=True, text=True,
                          timeout=120, preexec_fn=limit if limit_file_bytes else None)


def write_csv(path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def test_a_failed_write_keeps_the_previous_report_whole(tmp_path):
    # A disk that fills up while the report is written must not leave half a page where
    # yesterday's report was: the file is written beside the target and renamed over it.
    names = [f"feature_{i}" for i in range(8)]
    rng = np.random.default_rng(1)
    Reference.from_data({n: rng.normal(size=500) for n in names}).save(
        tmp_path / "reference.json")
    write_csv(tmp_path / "live.csv", names,
              [[f"{v:.3f}" for v in row] for row in rng.normal(size=(200, len(names)))])
    out = tmp_path / "report.html"
    out.write_text("<p>yesterday's report</p>\n", encoding="utf-8")

    done = report("--reference", str(tmp_path / "reference.json"), str(tmp_path / "live.csv"),
                  "-o", str(out), limit_file_bytes=4096)

    assert done.returncode == 2
    assert done.stderr == f"inferwatch report: error: cannot write {out}: File too large\n"
    assert out.read_text(encoding="utf-8") == "<p>yesterday's report</p>\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.csv", "reference.json",
                                                          "report.html"]
    # Without the limit the same command replaces it with the whole page.
    done = report("--reference", str(tmp_path / "reference.json"),
                  str(tmp_path / "live.csv"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text(encoding="utf-8").endswith("</html>\n")


def test_one_bad_cell_in_a_numeric_column_is_one_wrong_type_not_the_whole_column(tmp_path):
    # A live export with one cell that is not a number: that cell is counted as a wrong
    # type, and the other rows are still compared with the reference.
    rng = np.random.default_rng(2)
    Reference.from_data({"age": rng.normal(40, 5, 2000)},
                        predictions=rng.random(2000)).save(tmp_path / "reference.json")
    rows = [[f"{rng.normal(40, 5):.3f}", f"{rng.random():.3f}"] for _ in range(1500)]
    rows[7] = ["oops", "n/a?"]
    rows[8] = ["", ""]
    write_csv(tmp_path / "live.csv", ["age", "value"], rows)
    out = tmp_path / "report.html"

    done = report("--reference", str(tmp_path / "reference.json"), str(tmp_path / "live.csv"),
                  "-o", str(out))

    assert done.returncode == 0, done.stderr
    page = out.read_text(encoding="utf-8")
    values = data_values(page)
    assert values["missing|age"] == "1.0"
    assert "<li>wrong_type: 1</li>" in page
    assert float(values["feature_drift|age|psi"]) < 0.1
    assert float(values["prediction_drift|value|psi"]) < 0.1


def test_a_file_compared_with_its_own_profile_shows_no_drift(tmp_path):
    # Class codes profiled as categories ("01", "02") must be read back as the same text:
    # read as numbers they became "1" and "2", every prediction an unseen category.
    data = tmp_path / "train.csv"
    write_csv(data, ["amount", "label"], [[i, f"0{i % 3 + 1}"] for i in range(300)])
    reference = tmp_path / "reference.json"
    done = subprocess.run([*INFERWATCH, "profile", str(data), "-o", str(reference),
                           "--predictions-column", "label", "--categorical", "label"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "report.html"

    done = report("--reference", str(reference), str(data), "-o", str(out))

    assert done.returncode == 0, done.stderr
    values = data_values(out.read_text(encoding="utf-8"))
    assert abs(float(values["feature_drift|amount|psi"])) < 1e-9
    assert abs(float(values["prediction_drift|label|psi"])) < 1e-9


def test_dash_output_pipes_the_profile_and_the_report_through_stdout(tmp_path):
    # `-o -` is the Unix way to pipe (`inferwatch report ... -o - | gzip`); it wrote a file
    # named "-" in the working directory instead.
    data = tmp_path / "train.csv"
    write_csv(data, ["amount", "label"], [[i * 0.5, f"c{i % 3}"] for i in range(300)])
    done = subprocess.run([*INFERWATCH, "profile", str(data), "-o", "-",
                           "--predictions-column", "label"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote the reference to stdout: 300 rows" in done.stderr
    reference = tmp_path / "reference.json"
    reference.write_text(done.stdout, encoding="utf-8")
    assert Reference.load(reference).rows == 300

    done = subprocess.run([*INFERWATCH, "report", "--reference", str(reference), str(data),
                           "-o", "-"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("<!DOCTYPE html>") and done.stdout.endswith("</html>\n")
    assert abs(float(data_values(done.stdout)["feature_drift|amount|psi"])) < 1e-9
    assert "wrote the report to stdout: 300 rows" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reference.json", "train.csv"]


def test_integer_codes_written_by_pandas_read_back_as_their_profiled_categories(tmp_path):
    # pandas writes an integer column with a gap as 10115.0; the profile keys it 10115,
    # and the report must read the same file under the same keys: no drift, no unseen.
    data = tmp_path / "train.csv"
    write_csv(data, ["amount", "zip"],
              [[i, f"{(10115, 20095, 80331)[i % 3]}.0" if i % 7 else ""] for i in range(300)])
    reference = tmp_path / "reference.json"
    done = subprocess.run([*INFERWATCH, "profile", str(data), "-o", str(reference),
                           "--categorical", "zip"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "report.html"

    done = report("--reference", str(reference), str(data), "-o", str(out))

    assert done.returncode == 0, done.stderr
    values = data_values(out.read_text(encoding="utf-8"))
    assert abs(float(values["feature_drift|zip|psi"])) < 1e-9
