"""Shadow comparisons of outputs that have names: a challenger returning its outputs in
another order, or one more output than its champion, and pairs waiting for a stalled drain.
Counts are checked against a hand count of the rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from inferwatch.core.shadow_compare import Comparison
from inferwatch.core.state import ModelState
from inferwatch.serving.bridge import InferwatchCollector
from inferwatch.serving.exposition import render

FRAUD = ["fraud", "ok"]
CHANNEL = ["web", "app", "pos"]
# What a stalled drain may leave waiting: pairs, and bytes of both sides' results.
MAX_PENDING_PAIRS = 100_000
MAX_PENDING_BYTES = 128 * 1024 * 1024


def _counts(state, metric):
    return {k: v for k, v in state.counters.get(metric, {}).items() if v}


def _folded(champion, shadow, classes=FRAUD + CHANNEL):
    comparison = Comparison("1", declared_classes=classes)
    comparison.add("predict", champion, shadow, "r", at=0.0)
    state = ModelState("m", "2")
    comparison.fold_into(state, now=0.0)
    return comparison, state


class TwoHeads:
    """A multi-task classifier answering a dict of label columns, keys in `order`."""

    def __init__(self, order, flip=False) -> None:
        self.order, self.flip = order, flip

    def predict(self, rows):
        rows = np.asarray(rows)
        fraud = np.where((rows[:, 0] > 0) != self.flip, "fraud", "ok")
        channel = np.array(CHANNEL)[np.abs(rows[:, 1]).astype(int) % 3]
        out = {"fraud": fraud, "channel": channel}
        return {key: out[key] for key in self.order}


def test_a_challenger_returning_its_outputs_in_another_order_agrees_row_for_row(registry):
    champion = inferwatch.instrument(TwoHeads(["fraud", "channel"]), name="m", version="1",
                                     classes=FRAUD + CHANNEL, registry=registry)
    handle = inferwatch.shadow(champion, TwoHeads(["channel", "fraud"]), version="2",
                               registry=registry)
    rows = np.random.default_rng(1).normal(scale=3, size=(30, 2))
    for i in range(0, 30, 3):
        champion.predict(rows[i:i + 3])
    assert handle.flush(30)
    handle.monitor.drain()
    agreement = _counts(handle.monitor.state, "inferwatch_shadow_agreement_total")
    assert agreement == {("1", "agree"): 60.0}  # 30 rows x 2 outputs, all the same
    text = render(InferwatchCollector(registry), None, None)[0].decode()
    exposed = {s.labels["result"]: s.value
               for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "inferwatch_shadow_agreement_total" and
               s.labels.get("model_version") == "2"}
    assert exposed == {"agree": 60.0, "disagree": 0.0}
    handle.close()


labels = st.lists(st.tuples(st.sampled_from(FRAUD), st.sampled_from(CHANNEL)), min_size=1,
                  max_size=40)


@settings(max_examples=40, deadline=None)
@given(ours=labels, flips=st.lists(st.booleans(), min_size=40, max_size=40),
       frame=st.booleans())
def test_labels_of_several_outputs_are_paired_by_name_whatever_their_order(ours, flips, frame):
    theirs = [(("ok" if f == "fraud" else "fraud") if flip else f, c)
              for (f, c), flip in zip(ours, flips)]
    champion = {"fraud": np.array([f for f, _ in ours]), "channel": np.array([c for _, c in ours])}
    shadow = {"channel": np.array([c for _, c in theirs]),
              "fraud": np.array([f for f, _ in theirs])}
    if frame:
        champion, shadow = pd.DataFrame(champion), pd.DataFrame(shadow)
    _, state = _folded(champion, shadow)
    differ = sum(a != b for a, b in zip(ours, theirs))
    expected = {("1", "agree"): 2.0 * len(ours) - differ, ("1", "disagree"): float(differ)}
    assert _counts(state, "inferwatch_shadow_agreement_total") == \
        {k: v for k, v in expected.items() if v}
    confusion = _counts(state, "inferwatch_shadow_confusion_total")
    assert sum(confusion.values()) == 2 * len(ours)
    assert all(c in FRAUD for (_, c, s) in confusion if s in FRAUD)  # never fraud vs channel


def test_a_challenger_with_one_more_output_is_compared_on_the_outputs_both_return():
    champion = {"fraud": np.array(["fraud", "ok", "ok"])}
    shadow = {"fraud": np.array(["fraud", "ok", "fraud"]), "channel": np.array(["web"] * 3)}
    _, state = _folded(champion, shadow)
    assert _counts(state, "inferwatch_shadow_compared_total") == {("1",): 1.0}
    assert _counts(state, "inferwatch_shadow_agreement_total") == {("1", "agree"): 2.0,
                                                                   ("1", "disagree"): 1.0}
    assert not _counts(state, "inferwatch_shadow_dropped_total")


def test_a_champion_output_the_challenger_lacks_keeps_its_rows_from_being_scored():
    # Both outputs are values: compared by name; an outcome row holds a target per champion
    # output, which the challenger cannot be judged on.
    champion = {"price": np.array([1.0, 2.0]), "days": np.array([3.0, 4.0])}
    shadow = {"price": np.array([1.5, 2.0])}
    comparison, state = _folded(champion, shadow)
    assert state.histograms["inferwatch_shadow_difference"][("1", "price")].count == 2
    assert comparison.score("r", [[1.0, 3.0], [2.0, 4.0]], at=1.0) is None


def test_pairs_waiting_for_a_stalled_drain_are_bounded_and_the_rest_counted():
    comparison = Comparison("1")
    result = np.zeros(1 << 17)  # 1 MiB a side: the byte bound comes first
    calls = MAX_PENDING_BYTES // (2 * result.nbytes) + 50
    for _ in range(calls):
        comparison.add("predict", result, result, None, at=0.0)
    assert comparison.pending() * 2 * result.nbytes <= MAX_PENDING_BYTES
    state = ModelState("m", "2")
    comparison.fold_into(state, now=0.0)
    compared = _counts(state, "inferwatch_shadow_compared_total")[("1",)]
    dropped = _counts(state, "inferwatch_shadow_dropped_total")[("1", "queue_full")]
    assert compared + dropped == calls and dropped >= 50
    comparison.add("predict", result, result, None, at=0.0)  # room again after the drain
    assert comparison.pending() == 1


def test_many_small_pairs_waiting_for_a_stalled_drain_stop_at_the_pair_bound():
    comparison = Comparison("1")
    one = np.array([1])
    for _ in range(MAX_PENDING_PAIRS + 10):
        comparison.add("predict", one, one, None, at=0.0)
    assert comparison.pending() == MAX_PENDING_PAIRS
    state = ModelState("m", "2")
    comparison.fold_into(state, now=0.0)
    assert _counts(state, "inferwatch_shadow_dropped_total") == {("1", "queue_full"): 10.0}
    assert _counts(state, "inferwatch_shadow_agreement_total") == {
        ("1", "agree"): float(MAX_PENDING_PAIRS)}
