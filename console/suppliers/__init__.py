"""suppliers."""
