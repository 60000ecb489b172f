"""Messaging plumbing: the transactional outbox, the idempotent consumer's inbox, Kafka.

The recipe a service follows (``main.py`` lifespan)::

    database = Database(settings.database_url)
    relay = OutboxRelay(
        database=database,
        table=messaging.outbox,  # messaging = messaging_tables(Base.metadata) in models.py
        producer_factory=lambda: create_producer(settings),
    )
    consumer = IdempotentConsumer(
        name="requests",  # consumer group and inbox name
        topics=[topics.CATALOG_SERVICE_PUBLISHED],
        database=database,
        inbox=messaging.inbox,
        consumer_factory=lambda names, group: create_consumer(settings, *names, group_id=group),
        producer_factory=lambda: create_producer(settings),  # dead letters
        max_attempts=settings.kafka_consumer_max_attempts,
    )
    consumer.register(ServicePublished.event_type, handlers.on_service_published)
    app.state.readiness.add("broker", broker_readiness_check(settings))
    await relay.start(); await consumer.start()
    ...  # yield
    await consumer.stop(); await relay.stop(); await database.dispose()

and in service code, inside the request's transaction::

    await outbox.add(session, RequestStatusChanged(...), key=tracking_code)
"""
