"""``staypoint console``: head office's desk (Textual), for clerks, marketing and administrators."""
