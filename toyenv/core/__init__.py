"""The world and its exact numbers, with no training: the enumerated prefix tree (``tree``), the
preset worlds (``presets``), the policies (``policies``), every depth-level pass once (``passes``),
the survey's exact quantities (``exact``) and their sampled estimators (``estimate``)."""
