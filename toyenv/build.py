"""Alias: ``python -m toyenv.build`` runs :mod:`toyenv.course.build` (the learner-edition build)."""
import sys

from .course import build as _impl

if __name__ == "__main__":
    sys.exit(_impl.main())
sys.modules[__name__] = _impl
