"""Panjereh's public event contracts: payloads, topics and the AsyncAPI document."""
