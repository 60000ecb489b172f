"""ORM tables of the identity service, in its own ``identity`` schema."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from panjereh.common.db import service_metadata
from panjereh.common.idempotency import idempotency_table
from panjereh.common.messaging.tables import messaging_tables

SCHEMA = "identity"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


messaging = messaging_tables(Base.metadata)
#: first answers to keyed creating requests (``Idempotency-Key``), pruned after a day
idempotency_records = idempotency_table(Base.metadata)


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Citizen(Base):
    """A person who has logged in at least once; profile from the civil registry."""

    __tablename__ = "citizen"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    national_code: Mapped[str] = mapped_column(Text, unique=True)
    mobile: Mapped[str] = mapped_column(Text)
    first_name: Mapped[str] = mapped_column(Text)
    last_name: Mapped[str] = mapped_column(Text)
    birth_date: Mapped[date | None] = mapped_column(Date)
    registered_at: Mapped[datetime] = _now()
    last_login_at: Mapped[datetime] = _now()


class StaffRole(Base):
    """A role held by the person with this national code (assigned before or after first login)."""

    __tablename__ = "staff_role"

    national_code: Mapped[str] = mapped_column(Text, primary_key=True)
    role: Mapped[str] = mapped_column(Text, primary_key=True)
    granted_by: Mapped[str] = mapped_column(Text)
    granted_at: Mapped[datetime] = _now()


class MachineClient(Base):
    """An OAuth 2.0 confidential client: an agency's system or a platform service."""

    __tablename__ = "machine_client"
    __table_args__ = (CheckConstraint("kind IN ('agency', 'service')", name="kind"),)

    client_id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    #: the agency code for agency clients, the service name for service clients
    owner: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    secret_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    secret_rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OtpChallenge(Base):
    """One code sent by SMS; only its keyed hash is kept."""

    __tablename__ = "otp_challenge"
    __table_args__ = (Index("ix_otp_challenge_mobile_created_at", "mobile", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    national_code: Mapped[str] = mapped_column(Text)
    mobile: Mapped[str] = mapped_column(Text)
    code_hash: Mapped[str] = mapped_column(Text)
    failed_attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: set when the right code is presented: from then on no other request may use it (a
    #: first login that then fails at the civil registry gives the code back)
    consumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RefreshTokenFamily(Base):
    """One login session: every refresh token rotated from the first one."""

    __tablename__ = "refresh_token_family"
    #: the sessions ended lately, polled by every service (``/.well-known/revoked-sessions``)
    __table_args__ = (
        Index(
            "ix_refresh_token_family_revoked_at",
            "revoked_at",
            postgresql_where=text("revoked_at IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    citizen_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("citizen.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoke_reason: Mapped[str | None] = mapped_column(Text)


class RefreshToken(Base):
    __tablename__ = "refresh_token"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    family_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("refresh_token_family.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(Text, unique=True)
    #: ``jti`` of the access token issued with it: logout finds the session from the bearer
    access_token_id: Mapped[str] = mapped_column(Text, index=True)
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: set when exchanged for a new token; presenting it again is a replay
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SigningKey(Base):
    """A database-held ES256 key (dev/test): private key encrypted (PKCS#8, password-derived)."""

    __tablename__ = "signing_key"
    __table_args__ = (
        CheckConstraint("status IN ('next', 'current', 'retired')", name="status"),
        Index(
            "uq_signing_key_one_current",
            "status",
            unique=True,
            postgresql_where=text("status = 'current'"),
        ),
    )

    kid: Mapped[str] = mapped_column(Text, primary_key=True)
    status: Mapped[str] = mapped_column(Text)
    private_key_pem: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, str]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SmsMessage(Base):
    """An SMS to send: written in the business transaction, sent by the dispatcher.

    The template tokens are encrypted (an OTP travels in them); they are erased once the
    message is sent or has expired. While a dispatcher sends a message, ``next_attempt_at`` is
    its lease: no other dispatcher takes the message before then, and if the one sending it dies
    the message simply falls due again.
    """

    __tablename__ = "sms_message"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'failed', 'expired')", name="status"),
        Index(
            "ix_sms_message_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    mobile: Mapped[str] = mapped_column(Text)
    template: Mapped[str] = mapped_column(Text)
    sealed_tokens: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = _now()
    next_attempt_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    provider_message_id: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)


class DevSms(Base):
    """What the console SMS gateway "sent" (dev mode only; shown by the dev outbox endpoint)."""

    __tablename__ = "dev_sms"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    mobile: Mapped[str] = mapped_column(Text, index=True)
    template: Mapped[str] = mapped_column(Text)
    tokens: Mapped[list[str]] = mapped_column(JSONB)
    text: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime] = _now()


class RateLimitCounter(Base):
    """Fixed-window hit counters; ``bucket`` is a keyed hash, never a mobile or an address."""

    __tablename__ = "rate_limit_counter"

    bucket: Mapped[str] = mapped_column(Text, primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
