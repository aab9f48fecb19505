"""Every figure of nnx, in one style (:mod:`nnx.plots.style`): a training run's curves
(:mod:`~nnx.plots.training`), an evaluated net's confusion matrix and mistakes
(:mod:`~nnx.plots.evaluation`), the small functions of chapters 4 and 6
(:mod:`~nnx.plots.functions`) and the benchmarks' timings (:mod:`~nnx.plots.bench`).

The drawing modules import matplotlib only when they draw, so importing this package is
cheap.
"""

from nnx.plots.functions import (
    descent_label,
    plot_descent_1d,
    plot_descent_2d,
    plot_gradient_field,
    plot_optimizer_paths,
)
from nnx.plots.style import DPI, MAX_POINTS, figure, preload, save_figure
from nnx.plots.training import plot_accuracy, plot_loss, plot_loss_curves

__all__ = ["DPI", "MAX_POINTS", "descent_label", "figure", "plot_accuracy", "plot_descent_1d",
           "plot_descent_2d", "plot_gradient_field", "plot_loss", "plot_loss_curves",
           "plot_optimizer_paths", "preload", "save_figure"]
