"""Head office's campaigns: segments, the daily job, e-mail and SMS with one send per occasion."""

from __future__ import annotations
