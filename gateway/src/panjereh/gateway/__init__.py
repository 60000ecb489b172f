"""API gateway: the one public entry point; routes ``/api/v1/...`` to the services."""
