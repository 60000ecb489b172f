"""The inquiry broker's use cases: plain async functions over a session they never commit.

One module per family, imported by name (``from panjereh.inquiry_broker.service import
asking``):

- :mod:`.asking`: a client asks (policy, audit, cache, send) and reads its own inquiries;
- :mod:`.delivery`: attempts to reach the provider, through the outbox or an HTTP connector;
- :mod:`.answers`: agencies' replies and connector answers recorded, signed and announced;
  time-outs;
- :mod:`.sweeping`: resends and time-outs of overdue inquiries;
- :mod:`.registry`: the inquiry types;
- :mod:`.tracker`: the citizen's view of who asked what about them;
- :mod:`.audit`: the access decisions' tamper-evident log;
- :mod:`.cards`: the replica of the catalog's published cards the policy reads.

The boundary (a request's unit of work, a consumer's transaction, a worker's) commits. An
inquiry is sent through the outbox in the same transaction that records it and its audit
entry; an answer is recorded, signed, announced (NOTIFY, delivered at commit) and published as
``InquiryAnswered`` in the transaction of whoever received it. Functions return DTOs (pydantic
schemas or frozen dataclasses), never ORM rows.
"""
