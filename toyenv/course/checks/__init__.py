"""Exercise checks, one module per notebook (``nb00`` ... ``nb11``), on one framework (``framework``).

From a notebook::

    from toyenv.course import checks
    checks.check("02.1", occupancy_from_trajectories)
    checks.hint("02.1")          # stuck? a nudge first, then the method in words

Importing this package registers every exercise, in notebook order; ``EXERCISES`` lists them.
"""
from .framework import (EXERCISES, KINDS, STATUSES, Case, CheckResult, Delegated, Failed, Hint,  # noqa: F401
                        NotAttempted, check, compare, forbidden, hint, passed, yours_or_reference,
                        describe_pair, exercise, exercises_of, parse_line)
from . import nb00, nb01, nb02, nb03, nb04, nb05, nb06, nb07, nb08, nb09, nb10, nb11  # noqa: F401,E402  register
