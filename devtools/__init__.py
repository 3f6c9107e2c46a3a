"""Local peers for the demo and the tests (never imported by console/)."""
