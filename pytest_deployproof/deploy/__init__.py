"""Changing what runs: deploy, roll back, restore, and the state they keep."""
