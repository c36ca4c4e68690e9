"""The inventory: its model, loading and validation, and what a run selects from it."""
