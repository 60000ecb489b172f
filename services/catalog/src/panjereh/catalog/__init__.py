"""Catalog service: agencies and approved, versioned service identity cards."""
