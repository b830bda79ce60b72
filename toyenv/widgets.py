"""Alias of :mod:`toyenv.viz.widgets`, so that ``from toyenv import widgets`` and ``toyenv.widgets.X`` keep working."""
import sys

from .viz import widgets as _impl

sys.modules[__name__] = _impl
