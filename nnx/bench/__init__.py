"""The timing programs: one measurement kernel (:mod:`nnx.bench.timing`), typed result
rows and one report pipeline (:mod:`nnx.bench.report`).

``nnx bench gradients`` (:mod:`nnx.bench.gradients`, also plain ``nnx bench``) times every
gradient method on every device; ``nnx bench training`` (:mod:`nnx.bench.training`) times
the book's whole training run against reference loops; ``nnx bench threads``
(:mod:`nnx.bench.threads`) times each kind of NumPy work at one BLAS thread and at all.
"""

# The subcommands of ``nnx bench``, as the ``nnx`` command's table has them: the module
# (imported only when it runs) and its help; ``nnx bench`` alone runs DEFAULT.
SUBCOMMANDS = {
    "gradients": ("nnx.bench.gradients", "time backprop and numerical gradients on every device"),
    "training": ("nnx.bench.training", "time the book's whole training run against reference "
                 "loops"),
    "threads": ("nnx.bench.threads", "time each kind of work at one BLAS thread and at every "
                "thread"),
}
DEFAULT = "gradients"
