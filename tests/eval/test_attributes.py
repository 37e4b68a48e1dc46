"""PA-100K metrics against hand-computed values."""
import math

import pytest

import numpy as np

from lman_ms.eval.metrics.attributes import attribute_metrics, masked_attribute_metrics, per_attribute_accuracy


def test_hand_computed():
    gt = [[1, 0, 1], [0, 1, 0], [1, 1, 0]]
    pred = [[1, 1, 1], [0, 0, 0], [1, 1, 0]]
    m = attribute_metrics(gt, pred)
    # attribute 0: TP 2/2, TN 1/1 -> 1; attribute 1: TP 1/2, TN 0/1 -> .25; attribute 2: TP 1/1, TN 2/2 -> 1
    assert m["mA"] == pytest.approx((1 + 0.25 + 1) / 3)
    # samples: |G∩Y|/|G∪Y| = 2/3, 0/1, 2/2; precision 2/3, 0 (no prediction), 1; recall 1, 0, 1
    assert m["Accu"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert m["Prec"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert m["Recall"] == pytest.approx(2 / 3)
    p, r = (5 / 3) / 3, 2 / 3
    assert m["F1"] == pytest.approx(2 * p * r / (p + r))


def test_edge_cases():
    perfect = attribute_metrics([[1, 0], [0, 1]], [[1, 0], [0, 1]])
    assert perfect == pytest.approx({"mA": 1.0, "Accu": 1.0, "Prec": 1.0, "Recall": 1.0, "F1": 1.0})
    # nothing predicted: mA is half the negatives' recall, instance metrics 0
    none = attribute_metrics([[1, 0], [0, 1]], [[0, 0], [0, 0]])
    assert none == pytest.approx({"mA": 0.5, "Accu": 0.0, "Prec": 0.0, "Recall": 0.0, "F1": 0.0})
    # an attribute nobody has: its positive half is 0 as in the reference code
    assert attribute_metrics([[0], [0]], [[0], [0]])["mA"] == pytest.approx(0.5)
    assert all(math.isnan(v) for v in attribute_metrics([], []).values())  # no samples: undefined
    with pytest.raises(ValueError, match="shape"):
        attribute_metrics([[1, 0]], [[1]])
    assert per_attribute_accuracy([[1, 0], [0, 0]], [[1, 1], [1, 0]]).tolist() == [0.5, 0.5]


def test_masked_equals_plain_without_unknowns():
    rng = np.random.default_rng(0)
    gt, pred = rng.integers(0, 2, (20, 6)), rng.integers(0, 2, (20, 6))
    assert masked_attribute_metrics(gt, pred) == pytest.approx(attribute_metrics(gt, pred))


def test_masked_hand_computed():
    gt = [[1, -1, 0], [0, 1, -1]]
    pred = [[1, 1, -1], [-1, 1, 1]]
    m = masked_attribute_metrics(gt, pred)
    # attr 0: P=1 (TP 1), N=1 (pred unstated: TN 0) -> .5; attr 1: only positives, TP 1/1 -> 1;
    # attr 2: only negatives, the prediction leaves it unstated -> 0
    assert m["mA"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    # sample 0: G={0}, Y={0} (attr 1 is not stated in gt, so its prediction does not count) -> 1, 1, 1
    # sample 1: G={1}, Y={1} (attr 2 unstated in gt) -> 1, 1, 1
    assert m["Accu"] == pytest.approx(1.0) and m["Prec"] == pytest.approx(1.0) and m["Recall"] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in masked_attribute_metrics([[-1, -1]], [[1, 0]]).values())
