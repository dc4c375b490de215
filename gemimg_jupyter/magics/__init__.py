"""The IPython face: ``%%gemimg`` and ``%gemimg``.

==============  ======================================================================
``extension``   :class:`GemimgMagics` (its traits, the cell magic, the line magic's router)
``cells``       parse and run one ``%%gemimg`` cell
``commands``    each ``%gemimg`` subcommand
``context``     :class:`MagicContext`, what the class hands a cell or a subcommand for one call
==============  ======================================================================
"""

from gemimg_jupyter.magics.extension import (
    CellArgs,
    GemimgMagics,
    load_ipython_extension,
    unload_ipython_extension,
)

__all__ = ["CellArgs", "GemimgMagics", "load_ipython_extension", "unload_ipython_extension"]
