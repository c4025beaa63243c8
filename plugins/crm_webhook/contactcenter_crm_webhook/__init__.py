"""contactcenter plugin: ended calls, agents' wrap-ups, new tickets and closed callbacks to a CRM as signed
JSON webhooks.

Every event is first written to the desk's persistent outbox (``api.outbox_put``), then POSTed by a
background sender with an HMAC-SHA256 signature and a timeout. A CRM that fails, hangs or is down gets the
message again later, with exponential back-off, until it answers 2xx: a CRM outage loses nothing, and a
restart picks up where it left off (``desk_started``). Each message carries a ``delivery_id`` the CRM can
use to ignore a repeat (a 2xx lost on the way back). The document format is in ``SCHEMA.md``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import threading
import time
import weakref
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import click
import httpx
from pydantic import BaseModel, ConfigDict, Field

from contactcenter import hookimpl
from contactcenter.hooks.api import PluginAPI
from contactcenter.records import (
    CallbackRecord,
    CallRecord,
    ComplianceReport,
    TicketRecord,
    UtteranceRecord,
    WrapUpRecord,
)

NAME = "crm_webhook"
SCHEMA = "contactcenter.crm/v1"
SIGNATURE_HEADER = "X-Contactcenter-Signature"
log = logging.getLogger(__name__)
Event = Literal["call.ended", "call.wrapped_up", "ticket.created", "callback.closed", "customer.erased"]


class CrmOptions(BaseModel):
    """``[plugins.crm_webhook]`` in settings.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = ""  # where to POST; empty: events are kept in the outbox until a URL is set
    secret_env: str = "CONTACTCENTER_CRM_SECRET"  # the environment variable holding the HMAC secret
    events: list[Event] = [  # pydantic copies it per instance
        "call.ended",
        "call.wrapped_up",
        "ticket.created",
        "callback.closed",
        "customer.erased",
    ]
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    first_retry_seconds: float = Field(default=5.0, gt=0)
    max_retry_seconds: float = Field(default=600.0, gt=0)
    batch: int = Field(default=50, ge=1, le=1000)


def options(api: PluginAPI) -> CrmOptions:
    return api.options if isinstance(api.options, CrmOptions) else CrmOptions.model_validate(api.options or {})


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of ``timestamp.body``: a receiver recomputes it and rejects stale timestamps."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def retry_delay(attempts: int, first: float, limit: float) -> float:
    """Exponential back-off with jitter: first, 2×first, 4×first ... up to ``limit``."""
    return min(limit, first * 2 ** max(0, attempts - 1)) * random.uniform(0.8, 1.2)


# ---------------------------------------------------------------------------------------------------- hooks


@hookimpl
def register_settings() -> type[BaseModel]:
    return CrmOptions


def _enqueue(api: PluginAPI, event: Event, key: str, data: dict[str, Any]) -> None:
    if event not in options(api).events:
        return
    api.outbox_put(event, {"occurred_at": datetime.now(UTC).isoformat(), "data": data}, key=key)
    sender_for(api).wake()


@hookimpl
def call_ended(call: CallRecord, transcript: list[UtteranceRecord], report: ComplianceReport, api: PluginAPI) -> None:
    data = {
        "call": call.model_dump(mode="json"),
        "compliance": {
            "score": report.score,  # null when the call could not be checked: see "check" and "unchecked_reason"
            "check": report.check,
            "unchecked_reason": report.unchecked_reason,
            "dropped_seconds": report.dropped_seconds,
            "failed": [{"rule_id": r.rule_id, "severity": r.severity} for r in report.failed],
        },
        "utterances": len(transcript),
    }
    _enqueue(api, "call.ended", f"call:{call.id}", data)


@hookimpl
def call_wrapped_up(call: CallRecord, wrap_up: WrapUpRecord, api: PluginAPI) -> None:
    """The agent's wrap-up, each time it is saved (``wrap_up.corrected`` on a correction): the CRM's record
    of the call should hold what the agent typed rather than what the machine guessed."""
    data = {"call": call.model_dump(mode="json"), "wrap_up": wrap_up.model_dump(mode="json")}
    _enqueue(api, "call.wrapped_up", f"wrap_up:{call.id}", data)


@hookimpl
def ticket_created(ticket: TicketRecord, api: PluginAPI) -> None:
    _enqueue(api, "ticket.created", f"ticket:{ticket.id}", {"ticket": ticket.model_dump(mode="json")})


@hookimpl
def callback_closed(callback: CallbackRecord, api: PluginAPI) -> None:
    _enqueue(api, "callback.closed", f"callback:{callback.id}", {"callback": callback.model_dump(mode="json")})


@hookimpl
def forget_customer(phone: str, phone_key: str, api: PluginAPI) -> str | None:
    """An erasure request reaches the CRM too: a ``customer.erased`` event with the number, queued in the
    outbox (the desk's own erasure has already removed every earlier message about the customer) and
    delivered by the running desk's sender. The CRM must erase its copy: the desk cannot."""
    if "customer.erased" not in options(api).events:
        return None
    message_id = api.outbox_put(
        "customer.erased",
        {"occurred_at": datetime.now(UTC).isoformat(), "data": {"phone": phone, "phone_key": phone_key}},
        key=f"erased:{phone_key}",
    )
    return f"the CRM is told to erase its copy: outbox message {message_id}, sent by the running desk"


@hookimpl
def desk_started(role: str, api: PluginAPI) -> None:
    sender_for(api).wake()  # deliver what an earlier run left in the outbox


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.group("crm")
    def crm() -> None:
        """The CRM webhook's outbox: what is waiting, and delivering it now."""

    @crm.command("outbox")
    @click.option("--all", "show_all", is_flag=True, help="Delivered messages too.")
    @click.pass_obj
    def outbox(app: Any, show_all: bool) -> None:
        """Messages not yet delivered to the CRM, with attempts and the last error."""
        api = app.plugins.api_for(NAME)
        for m in api.outbox_items(include_delivered=show_all):
            state = (
                f"delivered {m.delivered_at:%Y-%m-%d %H:%M:%S}"
                if m.delivered_at
                else (f"next try {m.next_attempt_at:%Y-%m-%d %H:%M:%S}")
            )
            click.echo(f"{m.id} {m.topic} {m.key} attempts={m.attempts} {state} {m.last_error}".rstrip())

    @crm.command("deliver")
    @click.pass_obj
    def deliver(app: Any) -> None:
        """Send every waiting message now (whatever its back-off); exits 1 if some could not be sent."""
        api = app.plugins.api_for(NAME)
        sent, failed = Sender(api).deliver_due(ignore_backoff=True)
        click.echo(f"delivered {sent}, failed {failed}")
        if failed:
            raise SystemExit(1)


# --------------------------------------------------------------------------------------------------- sending

_senders: weakref.WeakKeyDictionary[PluginAPI, Sender] = weakref.WeakKeyDictionary()
_senders_lock = threading.Lock()


def sender_for(api: PluginAPI) -> Sender:
    """The background sender of this desk process (one per plugin host, ending when the host stops)."""
    with _senders_lock:
        sender = _senders.get(api)
        if sender is None:
            sender = _senders[api] = Sender(api)
            sender.start()
        return sender


class Sender:
    """Delivers the outbox in the background: wakes on new events, otherwise at the next retry time."""

    def __init__(self, api: PluginAPI) -> None:
        self.api = api
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="crm-webhook", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self.api.stopping.is_set():
            try:
                self.deliver_due()
                pause = self._next_due_in()
            except Exception:  # the database down, for instance: the messages wait, the sender retries
                log.exception("CRM webhook delivery failed; retrying shortly")
                pause = options(self.api).first_retry_seconds
            self._wake.wait(timeout=pause)
            self._wake.clear()
            if self.api.stopping.is_set():
                break

    def _next_due_in(self) -> float:
        soonest = self.api.outbox_next_due()
        if soonest is None:
            return 3600.0
        return min(3600.0, max(0.05, (soonest - datetime.now(UTC)).total_seconds()))

    def deliver_due(self, ignore_backoff: bool = False) -> tuple[int, int]:
        """Send what is due; (delivered, failed)."""
        opts = options(self.api)
        if not opts.url:
            return 0, 0
        secret = os.environ.get(opts.secret_env, "")
        sent = failed = 0
        with httpx.Client(timeout=opts.timeout_seconds) as client:
            # held past the request's timeout, so no other desk process sends them at the same time
            for message in self.api.outbox_claim(
                opts.batch, hold_seconds=opts.timeout_seconds + 30, ignore_backoff=ignore_backoff
            ):
                error = "" if secret else f"no secret: set the environment variable {opts.secret_env}"
                if not error:
                    error = self._post(client, opts.url, secret.encode(), message.id, message.topic, message.payload)
                if error:
                    failed += 1
                    log.warning("CRM webhook %s (%s) not delivered: %s", message.id, message.key, error)
                    delay = retry_delay(message.attempts + 1, opts.first_retry_seconds, opts.max_retry_seconds)
                    self.api.outbox_retry_later(message.id, error, datetime.now(UTC) + timedelta(seconds=delay))
                else:
                    sent += 1
                    self.api.outbox_complete(message.id)
        return sent, failed

    @staticmethod
    def _post(
        client: httpx.Client, url: str, secret: bytes, message_id: int, topic: str, payload: dict[str, Any]
    ) -> str:
        document = {"schema": SCHEMA, "event": topic, "delivery_id": message_id, **payload}
        body = json.dumps(document, ensure_ascii=False, sort_keys=True).encode("utf-8")
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Contactcenter-Event": topic,
            "X-Contactcenter-Delivery": str(message_id),
            "X-Contactcenter-Timestamp": timestamp,
            SIGNATURE_HEADER: sign(secret, timestamp, body),
        }
        try:
            response = client.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            return "timed out"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return ""
        return f"HTTP {response.status_code}: {response.text[:200]}"
