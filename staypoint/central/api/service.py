"""Moved to ``staypoint.central.application.services`` (the use cases, without HTTP): this name
stays only until every module imports them from there (remove it then)."""

from staypoint.central.application.services import ApiKey, Services

__all__ = ["ApiKey", "Services"]
