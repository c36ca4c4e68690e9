"""Reaching a host: commands and files through testinfra, OpenSSH masters, Docker clients."""
