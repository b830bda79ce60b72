"""The course's tooling: exercise checks (``checks``), the learner-edition build (``build``) and the
grader (``grade``). It imports the science (``toyenv.core`` ... ``toyenv.viz``); nothing in the
science imports it."""
