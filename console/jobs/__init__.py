"""Background work: the procrastinate engine, its tasks and the worker command."""
