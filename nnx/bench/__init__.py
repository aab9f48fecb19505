"""The timing programs: one measurement kernel (:mod:`nnx.bench.timing`), typed result
rows and one report pipeline (:mod:`nnx.bench.report`).

``nnx bench`` (:mod:`nnx.bench.gradients`) times every gradient method on every device;
:mod:`nnx.bench.training` times the book's whole training run against reference loops.
"""
