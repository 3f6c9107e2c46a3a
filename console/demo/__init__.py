"""Demo data and demo helpers."""
