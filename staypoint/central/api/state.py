"""Moved to ``staypoint.central.application.state``: this name stays only until every module
imports it from there (remove it then)."""

from staypoint.central.application.state import SideStore

__all__ = ["SideStore"]
