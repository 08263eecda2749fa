"""Service clients: who may sign requests to ``/api/v1/service/*``, with which secrets."""
