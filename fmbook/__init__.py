"""fmbook: the package of the book *Flow Matching: an Executable Textbook*.

Each chapter imports the modules it teaches; open a module beside its chapter:

=========================================  ================================================
chapter                                     modules
=========================================  ================================================
1. Generative modeling paradigms            :mod:`~fmbook.processes`, :mod:`~fmbook.data`
2. ODEs, flows and CNFs                     :mod:`~fmbook.solvers`, :mod:`~fmbook.likelihood`
3. Flow matching and the CFM theorem        :mod:`~fmbook.paths`, :mod:`~fmbook.marginals`,
                                            :mod:`~fmbook.models`, :mod:`~fmbook.losses`,
                                            :mod:`~fmbook.train`
4. Optimal transport and kinetic energy     :mod:`~fmbook.ot`
5. Affine and Gaussian probability paths    :mod:`~fmbook.schedulers`,
                                            :mod:`~fmbook.parameterizations`
6. Score matching and SDE sampling          :mod:`~fmbook.solvers` (SDE steps), :mod:`~fmbook.losses`
7. Denoising diffusion (DDPM)               :mod:`~fmbook.ddpm`, :mod:`~fmbook.conventions`
8. Flow matching in practice                :mod:`~fmbook.guidance`, :mod:`~fmbook.scaling`,
                                            ``python -m fmbook`` (``fmbook.__main__``)
every chapter                               :mod:`~fmbook.metrics`, :mod:`~fmbook.viz`,
                                            :mod:`~fmbook.grids`, :mod:`~fmbook.interactive`,
                                            :mod:`~fmbook.exercises`
=========================================  ================================================

``fmbook._checks`` holds every argument check and imports nothing of fmbook; the import
graph has no cycles (``tests/test_type_hints.py`` and ``tests/test_api_reference.py`` find
the modules by walking the package).
"""

__version__ = "0.1.0"
