"""Head office's HTTP API for the booking engine, the website and the property systems."""
