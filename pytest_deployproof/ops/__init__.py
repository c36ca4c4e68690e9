"""Operator and CI entry points beside pytest: the CLI, the comment hook, the webhook."""
