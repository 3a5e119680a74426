"""Head office's application layer: its use cases, without HTTP (``services.py`` the facade)."""
