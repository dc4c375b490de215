"""The vocabulary every layer shares; it imports nothing else of the package.

==============  =====================================================================
``errors``      the error tree (each class carries its hint) and :func:`redact`
``settings``    frozen :class:`Settings`, :class:`RetryPolicy`, :class:`Secret`
``params``      ``PARAM_SPECS``: every generation parameter, declared once
``models``      the model table, :class:`GenerationParams` validation, :class:`JobState`, :class:`TaskStatus`
``text``        :func:`format_usd` and :func:`plural`, the words every layer shares
==============  =====================================================================
"""
