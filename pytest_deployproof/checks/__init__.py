"""Assertions that judge observations: one module per kind of check."""
