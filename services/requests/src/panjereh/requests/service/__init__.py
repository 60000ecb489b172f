"""The requests service's use cases, one module per family.

- ``replica``: the local copy of published cards (events, bootstrap);
- ``intake``: submitting a request (validation, tracking code, SLA, events);
- ``transitions``: the one way a request changes status (history row + event);
- ``reads``: what citizens and officers read (a request, lists);
- ``orchestration``: the worker's units of work (claim due steps, record their outcomes);
- ``rulings``: what a card's rules see and how their verdict reads (live and on replay);
- ``decisions``: ``conclude``, the one way a request is decided (receipt, document, events);
- ``documents`` / ``receipts``: what a decision issues and leaves behind, and their checks;
- ``agency``: the officers' queue and their decisions;
- ``escalation`` / ``stats``: overdue requests sent to their agency, and the public KPIs.

Plain async functions with keyword-only arguments; they never commit and never import the
web framework. Routers make one call each.
"""
