"""`inferwatch profile --bins` and Reference.from_data(bins=): the quantile edges come from one
sort, the very values np.quantile(method="higher") gave, whatever the bin count; the command
refuses a count past MAX_BINS with an error naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from inferwatch.cli import main
from inferwatch.quality.profiling import MAX_BINS, profile_column, quantile_cuts
from inferwatch.quality.reference import Reference

FINITE_FLOATS = {"allow_nan": False, "allow_infinity": False}


def numpy_cuts(finite: np.ndarray, bins: int) -> np.ndarray:
    return np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="higher")


def old_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """The edges of a non-constant float64 column as np.quantile made them."""
    finite = values[np.isfinite(values)]
    edges = np.unique(numpy_cuts(finite, min(bins, len(finite))))
    return edges[edges > finite.min()]


@given(values=hnp.arrays(st.sampled_from([np.float64, np.float32]),
                         st.integers(1, 300),
                         elements=st.one_of(st.floats(-1e6, 1e6, width=32),
                                            st.sampled_from([0.0, 1.0, -2.5, 7.0]))),
       bins=st.integers(1, 400))
@settings(max_examples=400, deadline=None)
def test_the_cuts_are_np_quantiles_value_for_value(values: np.ndarray, bins: int) -> None:
    bins = min(bins, len(values))  # as the profile caps them
    expected = numpy_cuts(values, bins)
    cuts = quantile_cuts(values, bins)
    assert cuts.dtype == expected.dtype
    assert np.array_equal(cuts, expected)
    # Bit for bit, bar the sign of a zero: with -0.0 and 0.0 both in the data, which of the
    # two (equal) values np.quantile returns is down to how its partition arranged them.
    nonzero = expected != 0
    assert cuts[nonzero].tobytes() == expected[nonzero].tobytes()


@given(values=hnp.arrays(np.float64, st.integers(2, 300),
                         elements=st.one_of(st.floats(-1e300, 1e300, **FINITE_FLOATS),
                                            st.sampled_from([0.0, -0.0, 1.0, 5e-324]))),
       bins=st.integers(1, 1000))
@settings(max_examples=300, deadline=None)
def test_a_profiles_edges_and_fractions_are_those_np_quantile_gave(values: np.ndarray,
                                                                   bins: int) -> None:
    if values.min() == values.max():
        return  # a constant's edges come from its value, not from quantiles
    profile = profile_column("x", values, bins=bins)
    edges = old_edges(values, bins)
    assert profile.edges == tuple(float(e) for e in edges)
    counts = np.bincount(np.searchsorted(edges, values, side="right"),
                         minlength=len(edges) + 1)
    assert profile.fractions == tuple(float(f) for f in counts / len(values))


def test_as_many_bins_as_rows_costs_one_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    # np.quantile's partition per bin was O(rows x bins): 80,000 rows at 40,000 bins took
    # minutes. The profile no longer calls it at all.
    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("np.quantile partitions once per bin")

    monkeypatch.setattr(np, "quantile", refused)
    values = np.random.default_rng(0).normal(size=50_000)
    profile = profile_column("x", values, bins=MAX_BINS)
    assert len(profile.fractions) == len(values)  # every value but the minimum is an edge


def test_from_data_with_a_huge_bin_count_is_one_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(np, "quantile", None)  # any call would fail
    values = np.random.default_rng(1).normal(size=20_000)
    reference = Reference.from_data({"a": values}, bins=10**12)
    assert len(reference.features["a"].fractions) == len(values)


def write_training(folder: Path) -> Path:
    data = folder / "train.csv"
    data.write_text("a\n" + "".join(f"{i}\n" for i in range(100)), encoding="utf-8")
    return data


@pytest.mark.parametrize("bins", [str(MAX_BINS + 1), "40000000000", str(10**30)])
def test_profile_refuses_an_absurd_bin_count_naming_the_limit(tmp_path: Path, capsys,
                                                             bins: str) -> None:
    out = tmp_path / "reference.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", str(write_training(tmp_path)), "-o", str(out), "--bins", bins])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--bins" in err and f"at most {MAX_BINS}" in err and "Traceback" not in err
    assert not out.exists()


def test_profile_takes_the_largest_bin_count(tmp_path: Path) -> None:
    out = tmp_path / "reference.json"
    assert main(["profile", str(write_training(tmp_path)), "-o", str(out),
                 "--bins", str(MAX_BINS)]) == 0
    assert len(Reference.load(out).features["a"].fractions) == 100
