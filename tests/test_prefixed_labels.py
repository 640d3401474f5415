"""A multi-output classifier's labels written ``<output>:<label>``: the same text whichever
way the distinct labels are found (a table lookup for labels within a small range, a sort
for any other)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from inferwatch.core.prediction_classes import prefixed
from inferwatch.core.prediction_state import count_classes

_INTEGER_ARRAYS = st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint8,
                                   np.uint16, np.uint64]).flatmap(
    lambda dtype: hnp.arrays(dtype, st.integers(0, 300), elements=hnp.from_dtype(np.dtype(dtype))))


@settings(max_examples=300, deadline=None)
@given(labels=_INTEGER_ARRAYS, prefix=st.sampled_from(["0:", "label:", ""]))
def test_prefixed_integer_labels_are_each_labels_text(labels, prefix):
    assert prefixed(labels, prefix).tolist() == [prefix + str(int(v)) for v in labels.tolist()]


@settings(max_examples=200, deadline=None)
@given(labels=st.lists(st.sampled_from(["0:a", "1:b", "é", ""]) | st.integers(0, 3),
                       max_size=200))
def test_class_counts_of_text_and_other_objects(labels):
    chunk = np.empty(len(labels), dtype=object)
    chunk[:] = labels
    expected: dict[str, int] = {}
    for label in labels:
        expected[str(label)] = expected.get(str(label), 0) + 1
    assert count_classes([chunk]) == expected
