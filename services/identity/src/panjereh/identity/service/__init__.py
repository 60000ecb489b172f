"""Identity's use cases, one module per family; callers import the module they need.

* :mod:`.login` — OTP request and verification, first-login registration
* :mod:`.ratelimits` — per-mobile and per-address limits on OTP requests, the resend cooldown
* :mod:`.tokens` — access/refresh tokens: the token endpoint's grants, logout, identity's own
  service token
* :mod:`.account` — the signed-in citizen's profile
* :mod:`.admin` — staff roles and machine clients
* :mod:`.notifications` — SMS about requests' status changes
* :mod:`.housekeeping` — pruning rows whose purpose is over
* :mod:`.dev` — the dev-mode SMS outbox

Plain async functions with keyword-only arguments; they return DTOs. Most take the caller's
``AsyncSession`` and only ``add`` and ``flush``: the unit of work that opened it commits (or,
for errors that are :class:`~panjereh.common.db.KeepChanges`, commits and then answers with
the error). A use case that must call another system takes the ``Database`` instead and runs
its own short units of work (``database.transaction()``) around the call — claim, call with no
transaction open, record — because only it knows what to claim and what to undo. None of them
ever calls ``commit()``.
"""
