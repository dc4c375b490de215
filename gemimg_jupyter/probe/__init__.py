"""Ask the gateway the questions its documentation leaves open: ``python -m gemimg_jupyter.probe``.

===========  ======================================================================
``cli``      :func:`run_probe` and :func:`main`, the command line
``checks``   the questions, one check each: a ``Probe`` that *has* its ``Gateway``
``report``   the answers (:class:`Check`, :class:`ProbeReport`) and the ``Gateway`` that records every exchange
===========  ======================================================================
"""

from gemimg_jupyter.probe.cli import UNPRICED_USD, Check, ProbeReport, main, run_probe

__all__ = ["UNPRICED_USD", "Check", "ProbeReport", "main", "run_probe"]
