"""Staypoint: an offline-first hotel loyalty programme."""

__version__ = "0.1.0"
