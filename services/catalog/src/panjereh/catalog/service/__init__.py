"""The catalog's use cases: plain async functions over a session they never commit.

One module per family: :mod:`.workflow` (drafts, approval, retirement, idempotent creation),
:mod:`.reads` (published cards, versions, drafts and their DTOs), :mod:`.search`,
:mod:`.stats` and :mod:`.agencies`. Callers import the module they need.

Authorization that depends on the card (an agency admin acts only on their agency's cards)
lives here, next to the rule it protects; the router only establishes who is calling.
"""
