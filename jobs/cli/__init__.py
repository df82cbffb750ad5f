"""Shared pieces of the command-line stages (argument checks, the one-line error wrapper)."""
