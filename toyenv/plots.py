"""Alias of :mod:`toyenv.viz.plots`, so that ``from toyenv import plots`` and ``toyenv.plots.X`` keep working."""
import sys

from .viz import plots as _impl

sys.modules[__name__] = _impl
