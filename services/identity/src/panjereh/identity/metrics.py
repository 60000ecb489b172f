"""Identity's own metrics, beside the kernel's (same registry, same ``/metrics``).

Labels are closed vocabularies: never a mobile, a national code or a challenge id.
"""

from __future__ import annotations

from prometheus_client import Counter

#: requested (a code was sent), verified, failed (wrong, expired, spent or unknown challenge),
#: rate_limited, refused (the mobile does not belong to the national code)
OTP_EVENTS = Counter(
    "panjereh_otp_events_total", "One-time-code logins, by what happened", ["event"]
)
#: sent or failed (after the last retry)
SMS_MESSAGES = Counter(
    "panjereh_sms_messages_total", "SMS messages settled, by outcome", ["outcome"]
)
