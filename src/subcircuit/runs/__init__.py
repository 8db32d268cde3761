"""Runs: what a run folder holds and how it is made (discover, sweep, the report of a folder)."""
