"""The ToAPIs key from Colab's secrets, when a notebook runs on Colab and the environment has none.

Colab keeps keys in its Secrets panel (🔑), readable with ``google.colab.userdata.get(name)``
once the notebook was granted access. :func:`colab_key` asks for ``TOAPIS_API_KEY`` there, once
per process: outside Colab (no ``google.colab``) nothing happens, and a secret that is missing
or refused to this notebook (``SecretNotFoundError``, ``NotebookAccessError``, a timeout) is
quietly no key, so the usual "no key: the simulator" applies. The value is never printed.
"""

from __future__ import annotations

import importlib

__all__ = ["COLAB_SECRET", "colab_key"]

#: The name of the secret (the same as the environment variable).
COLAB_SECRET = "TOAPIS_API_KEY"  # noqa: S105 - a name, not a key

_READ: list[str | None] = []  # the one answer of this process (asking again may open Colab's access dialog)


def colab_key() -> str | None:
    """The key stored in Colab's secrets, or ``None`` (not on Colab, no such secret, access refused)."""
    if _READ:
        return _READ[0]
    value: object = None
    try:
        userdata = importlib.import_module("google.colab.userdata")
    except Exception:  # noqa: BLE001 - not on Colab (or a broken install): no key from there
        userdata = None
    if userdata is not None:
        try:
            value = userdata.get(COLAB_SECRET)
        except Exception:  # noqa: BLE001 - SecretNotFoundError, NotebookAccessError, TimeoutException …
            value = None
    _READ.append(value.strip() if isinstance(value, str) and value.strip() else None)
    return _READ[0]
