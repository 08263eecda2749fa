"""The signed service API the scribe backend calls (``/api/v1/service/*``)."""
