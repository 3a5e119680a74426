"""Staypoint."""
