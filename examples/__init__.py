"""Runnable examples beside the console."""
