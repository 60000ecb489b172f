"""Requests service: citizens' requests, decisions and issued documents."""
