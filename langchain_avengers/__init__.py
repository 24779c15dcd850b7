"""Adapter package (see docs)."""
