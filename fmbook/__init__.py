"""fmbook: the companion package of the book *Flow Matching, Executable*.

Modules: :mod:`~fmbook.data` (toy data sets), :mod:`~fmbook.paths` (probability paths),
:mod:`~fmbook.models` (velocity networks), :mod:`~fmbook.losses` (training losses),
:mod:`~fmbook.solvers` (ODE solvers), :mod:`~fmbook.train` (the training loop),
:mod:`~fmbook.metrics` (sample-quality metrics) and :mod:`~fmbook.viz` (figures).
"""

__version__ = "0.1.0"
