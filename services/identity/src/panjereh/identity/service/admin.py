"""Platform administration: staff roles and machine clients."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.idempotency import Outcome, once
from panjereh.common.jwk import b64url, b64url_decode
from panjereh.identity.crypto import Keys, new_opaque_token
from panjereh.identity.errors import ClientExists, ClientNotFound
from panjereh.identity.models import MachineClient
from panjereh.identity.repository import ClientRepository, StaffRoleRepository, idempotency
from panjereh.identity.schemas import ClientCreate, ClientRead, ClientWithSecret, StaffRolesRead

logger = logging.getLogger(__name__)

#: the operation an ``Idempotency-Key`` of ``POST /api/v1/admin/clients`` is bound to
CREATE_CLIENT = "identity.create_client"
#: the member of a remembered answer that holds the encrypted secret (not a secret itself)
_SEALED_SECRET = "client_secret_sealed"  # noqa: S105


# ------------------------------------------------------------------------ staff
async def set_staff_roles(
    session: AsyncSession, *, national_code: str, roles: Sequence[str], granted_by: str
) -> StaffRolesRead:
    wanted = sorted(set(roles))
    repository = StaffRoleRepository(session)
    await repository.replace(national_code, wanted, granted_by)
    logger.info("staff roles set", extra={"by": granted_by, "roles": wanted})
    return StaffRolesRead(
        national_code=national_code, roles=await repository.roles_of(national_code)
    )


# ------------------------------------------------------------------------ machine clients
def _client_read(client: MachineClient) -> ClientRead:
    return ClientRead(
        client_id=client.client_id,
        agency=client.owner if client.kind == "agency" else None,
        service=client.owner if client.kind == "service" else None,
        scopes=list(client.scopes),
        created_at=client.created_at,
        revoked_at=client.revoked_at,
    )


async def create_client(
    session: AsyncSession,
    *,
    spec: ClientCreate,
    keys: Keys,
    now: datetime,
    secret: str | None = None,
) -> ClientWithSecret:
    """A new client; its secret is returned this once and only its hash is kept."""
    kind, owner = ("agency", spec.agency) if spec.agency else ("service", spec.service)
    assert owner is not None  # guaranteed by ClientCreate
    client_id = spec.client_id or f"{kind}-{owner}-{uuid.uuid4().hex[:8]}"
    repository = ClientRepository(session)
    if await repository.get(client_id) is not None:
        raise ClientExists
    secret = secret or new_opaque_token()
    client = MachineClient(
        client_id=client_id,
        kind=kind,
        owner=owner,
        scopes=sorted(set(spec.scopes)),
        secret_hash=keys.token_hash(secret),
        created_at=now,
    )
    session.add(client)
    await session.flush()
    return ClientWithSecret(**_client_read(client).model_dump(), client_secret=secret)


@dataclass(frozen=True)
class ClientCreation:
    """The created client (with its secret) and whether this answer repeats an earlier one."""

    client: ClientWithSecret
    replayed: bool


async def create_client_once(
    session: AsyncSession,
    *,
    spec: ClientCreate,
    keys: Keys,
    now: datetime,
    actor: str,
    idempotency_key: str | None,
) -> ClientCreation:
    """:func:`create_client`, at most once per ``Idempotency-Key`` of ``actor``.

    The repeated answer must show the same secret, yet the secret is stored nowhere in clear
    (only its HMAC, in ``machine_client``). So the remembered answer holds it **encrypted**:
    AES-GCM under identity's storage key, with the actor, the key and the operation as
    associated data. A copy of the database alone cannot read it, and a remembered answer
    cannot be replayed under another caller or key: it would not decrypt. Remembered answers
    are pruned after a day (:mod:`.housekeeping`); a replay shows the secret as first issued,
    even if it was rotated since.
    """
    context = _seal_context(actor, idempotency_key or "")

    async def create() -> Outcome:
        created = await create_client(session, spec=spec, keys=keys, now=now)
        return Outcome(status_code=201, body=_sealed(created, keys=keys, context=context))

    outcome = await once(
        session,
        idempotency,
        actor=actor,
        key=idempotency_key,
        operation=CREATE_CLIENT,
        request=spec,
        create=create,
    )
    return ClientCreation(
        client=_unsealed(outcome.body, keys=keys, context=context), replayed=outcome.replayed
    )


def _seal_context(actor: str, key: str) -> bytes:
    return "\x1f".join((CREATE_CLIENT, actor, key)).encode()


def _sealed(created: ClientWithSecret, *, keys: Keys, context: bytes) -> dict[str, object]:
    body: dict[str, object] = created.model_dump(mode="json", exclude={"client_secret"})
    body[_SEALED_SECRET] = b64url(keys.encrypt(created.client_secret.encode(), context=context))
    return body


def _unsealed(body: dict[str, object], *, keys: Keys, context: bytes) -> ClientWithSecret:
    fields = {name: value for name, value in body.items() if name != _SEALED_SECRET}
    secret = keys.decrypt(b64url_decode(str(body[_SEALED_SECRET])), context=context).decode()
    return ClientWithSecret.model_validate({**fields, "client_secret": secret})


async def list_clients(session: AsyncSession) -> list[ClientRead]:
    return [_client_read(client) for client in await ClientRepository(session).all()]


async def rotate_client_secret(
    session: AsyncSession, *, client_id: str, keys: Keys, now: datetime
) -> ClientWithSecret:
    client = await ClientRepository(session).for_update(client_id)
    if client is None or client.revoked_at is not None:
        raise ClientNotFound
    secret = new_opaque_token()
    client.secret_hash = keys.token_hash(secret)
    client.secret_rotated_at = now
    await session.flush()
    return ClientWithSecret(**_client_read(client).model_dump(), client_secret=secret)


async def revoke_client(session: AsyncSession, *, client_id: str, now: datetime) -> None:
    client = await ClientRepository(session).for_update(client_id)
    if client is None:
        raise ClientNotFound
    if client.revoked_at is None:
        client.revoked_at = now
        await session.flush()
