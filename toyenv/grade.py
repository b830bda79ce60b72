"""Alias: ``python -m toyenv.grade`` runs :mod:`toyenv.course.grade` (the grader)."""
import sys

from .course import grade as _impl

if __name__ == "__main__":
    sys.exit(_impl.main())
sys.modules[__name__] = _impl
