"""The local stack: embedded PostgreSQL and Kafka-protocol broker, migrations, every process.

``make run`` starts it; the test suite uses the same embedded servers.
"""
