"""Reading runs: the role diagnosis, pipelines with handoff reports, forgetting, and the exact
experiments the notebooks call. Imports the world (``core``) and the methods, never the figures."""
