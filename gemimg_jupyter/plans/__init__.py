"""Sweeps on paper (pure): axes and the plans made of them.

==========  ==========================================================================
``axes``    sweep axis names and parsing: :class:`Axis`, :func:`parse_axis`, ranges
``plan``    :class:`SweepPlan`, :func:`plan_sweep`, :class:`Quote` (re-exports ``axes``)
==========  ==========================================================================
"""
