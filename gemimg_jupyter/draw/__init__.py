"""Pictures made with Pillow (pure): decoding and thumbnails, grids, sheets.

==============  ==================================================================
``images``      decode and verify bytes, thumbnails, PNG provenance chunks
``grid``        labelled comparison grids: layout, render, the plan's grid
``primitives``  the drawing pieces: colours, text that fits, arrows, cells, tiles
``sheets``      the contact sheet and grids stacked one under another
==============  ==================================================================
"""
