"""Observing what runs: containers, engines, probes, stack files, databases, drift."""
