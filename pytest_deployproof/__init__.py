"""pytest-deployproof: prove a deployment is sound with ordinary pytest tests."""
