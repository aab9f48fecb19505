"""Looking inside a trained net (a run loaded by :func:`nnx.run.load_run`): its confusion
matrix and per-class figures, and its most confidently wrong images (drawn by
:mod:`nnx.plots.evaluation`). Photos of digits become MNIST images in :mod:`nnx.photos`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nnx.functions import one_hot, softmax
from nnx.network import PREDICT_CHUNK, MultiLayerNet

CLASSES = 10


@dataclass
class Evaluation:
    """What :func:`evaluate` found, as host values: the confusion matrix (rows true,
    columns predicted) and the most confidently wrong rows, most confident first."""

    confusion: np.ndarray
    wrong_index: np.ndarray
    wrong_true: np.ndarray
    wrong_label: np.ndarray
    wrong_prob: np.ndarray

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion)) / max(int(self.confusion.sum()), 1)

    def per_class(self) -> list[dict[str, Any]]:
        """Per class: images, one-vs-rest accuracy, precision and recall (None if undefined)."""
        c, n = self.confusion, int(self.confusion.sum())
        rows = []
        for k in range(c.shape[0]):
            tp, true, pred = int(c[k, k]), int(c[k].sum()), int(c[:, k].sum())
            rows.append({"class": k, "images": true, "accuracy": (n - true - pred + 2 * tp) / n,
                         "precision": tp / pred if pred else None,
                         "recall": tp / true if true else None})
        return rows

    def table(self) -> str:
        """The per-class figures and the overall accuracy, as text."""
        def f(v: float | None) -> str:
            return f"{v:10.4f}" if v is not None else f"{'-':>10}"

        lines = [f"{'class':>5} {'images':>7} {'accuracy':>10} {'precision':>10} {'recall':>10}"]
        lines += [f"{r['class']:5d} {r['images']:7d} {f(r['accuracy'])} {f(r['precision'])} "
                  f"{f(r['recall'])}" for r in self.per_class()]
        lines.append(f"{'all':>5} {int(self.confusion.sum()):7d} {f(self.accuracy)}   "
                     "(accuracy per class: that class against the rest)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        wrong = [{"index": int(i), "true": int(t), "predicted": int(p), "probability": float(q)}
                 for i, t, p, q in zip(self.wrong_index, self.wrong_true, self.wrong_label,
                                       self.wrong_prob, strict=True)]
        return {"accuracy": self.accuracy, "images": int(self.confusion.sum()),
                "classes": self.per_class(), "confusion": self.confusion.tolist(),
                "most_confident_wrong": wrong}


def evaluate(net: MultiLayerNet, x: Any, t: Any, n_wrong: int = 24) -> Evaluation:
    """Classify ``x`` (on the net's device) against labels ``t``; computed there, only the
    10x10 counts and the ``n_wrong`` most confidently wrong rows move to the host."""
    be, xp = net.backend, net.xp
    f = xp.float64 if be.float64 else xp.float32  # counts and indices stay exact in either
    with be.scope():
        pred = net.predict_labels(x)  # the arithmetic of net.accuracy
        counts = xp.matmul(xp.matrix_transpose(one_hot(t, CLASSES, f)), one_hot(pred, CLASSES, f))
        ends = [(s, min(s + PREDICT_CHUNK, x.shape[0])) for s in range(0, x.shape[0],
                                                                       PREDICT_CHUNK)]
        top = xp.concat([xp.max(softmax(net.predict(x[s:e, ...])), axis=1) for s, e in ends])
        score = xp.astype(top, f) - 2.0 * xp.astype(pred == t, f)
        order = xp.argsort(score, descending=True)[:n_wrong]
        picked = be.to_numpy(xp.stack([xp.astype(v, f) for v in (
            order, xp.take(t, order), xp.take(pred, order), xp.take(score, order))]))
        confusion = np.rint(be.to_numpy(counts)).astype(np.int64)
    picked = picked[:, picked[3] > 0]  # right rows scored below zero
    return Evaluation(confusion, *picked[:3].astype(np.int64), picked[3])
