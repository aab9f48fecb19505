"""What a training run does: :class:`TrainConfig`, the book's defaults, validated in one
place (a run's ``config.json`` is this, as :func:`config_dict` writes it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from nnx.errors import (
    InputError,
    check_dropout,
    check_weight_decay,
    non_negative_int,
    one_of,
    positive_int,
    positive_number,
)
from nnx.layers import ACTIVATIONS
from nnx.network import METHODS

GRADS = ("backprop", "numerical")


@dataclass
class TrainConfig:
    """What a training run does; the defaults are the book's (chapter 5, ``train_neuralnet.py``)."""

    device: str = "auto"
    dtype: str = "float64"
    grad: str = "backprop"
    numerical_method: str = "vectorized"
    iters: int = 10_000
    batch_size: int = 100
    lr: float = 0.1
    hidden: Sequence[int] = (50,)
    activation: str = "relu"
    weight_init_std: float | str = 0.01
    optimizer: str = "sgd"
    optimizer_options: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    eval_every: int | None = None  # None: once per epoch (train size / batch size)
    # Chapter 6 (the defaults leave a run as before):
    weight_decay: float = 0.0  # the book's weight_decay_lambda
    dropout: float = 0.0  # the ratio of units dropped in training; 0: no dropout layers
    batch_norm: bool = False
    val_split: float = 0.0  # the fraction of the training set held out for validation

    def validate(self, train_size: int | None = None) -> None:
        """Raise :class:`InputError` (one sentence) for any value the run cannot use."""
        one_of("gradient", self.grad, GRADS)
        one_of("numerical method", self.numerical_method, METHODS)
        one_of("activation", self.activation, ACTIVATIONS)
        positive_int("iters", self.iters)
        positive_int("batch size", self.batch_size)
        if self.eval_every is not None:
            positive_int("eval every", self.eval_every)
        if not self.hidden:
            raise InputError("hidden needs at least one layer size")
        for h in self.hidden:
            positive_int("hidden size", h)
        positive_number("learning rate", self.lr)
        non_negative_int("seed", self.seed)
        check_weight_decay(self.weight_decay)
        check_dropout(self.dropout)
        if isinstance(self.val_split, bool) or not isinstance(self.val_split, (int, float)) \
                or not 0.0 <= self.val_split < 1.0:
            raise InputError(f"the validation split must be in [0, 1), got {self.val_split!r}")
        if train_size is not None and self.val_split:
            n_val = self.val_size(train_size)
            if n_val < 1 or n_val >= train_size:
                raise InputError(
                    f"a validation split of {self.val_split:g} of the {train_size} training "
                    f"examples leaves {train_size - n_val} to train on and {n_val} to "
                    "validate; choose a split that leaves both")
            train_size -= n_val
        if train_size is not None and self.batch_size > train_size:
            raise InputError(
                f"batch size {self.batch_size} is larger than the {train_size} training examples"
            )

    def val_size(self, train_size: int) -> int:
        """How many of ``train_size`` examples the validation split holds out."""
        return int(round(train_size * self.val_split))

    def net_options(self) -> dict[str, Any]:
        """The chapter 6 keyword arguments of :class:`MultiLayerNet` for this config."""
        return {"weight_decay_lambda": self.weight_decay, "use_dropout": self.dropout > 0,
                "dropout_ratio": self.dropout, "use_batchnorm": self.batch_norm}

    def iters_per_epoch(self, train_size: int) -> int:
        return max(train_size // self.batch_size, 1)


def config_dict(config: TrainConfig) -> dict[str, Any]:
    out = asdict(config)
    out["hidden"] = list(config.hidden)
    return out
