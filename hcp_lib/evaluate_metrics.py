"""Temporary alias of :mod:`hcp_lib.metrics` while the package moves (removed in the same change)."""
from .metrics import *  # noqa: F401,F403
from .metrics import _finite  # noqa: F401
