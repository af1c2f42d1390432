"""The regression suite that ships with the plugin: the conv engine matrix under every init order.

Run it where the plugin is installed, from any folder::

    pytest --pyargs pytest_trtctx.suite --trtctx-order=all

The matrix is ``conv_matrix.toml`` here, unless the rootdir has its own
``engines/conv_matrix.toml`` or ``--trtctx-matrix`` names one.
"""

from __future__ import annotations

from ..engines.matrix import PACKAGED

#: The packaged matrix (the default where the rootdir has none).
MATRIX = PACKAGED
