"""The call store: every table the product keeps (SQLAlchemy 2.0 declarative ORM).

Times are stored in UTC (``UTCDateTime``) and converted to the desk's time zone only for display, so the
same rows read the same on SQLite (which keeps no zone) and PostgreSQL. Enumerations are short strings
checked by the code that writes them, so a new disposition or category needs no migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware; naive input is refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware datetime (UTC or local zone)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Agent(Base):
    """A person who answers calls, known by the extension their phone registers as."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    extension: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    team: Mapped[str] = mapped_column(String(100), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Customer(Base):
    """A caller the desk knows (R5: name, company, phone)."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    company: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str] = mapped_column(String(32), index=True)  # as written by whoever entered it
    phone_key: Mapped[str] = mapped_column(String(32), default="", index=True)  # phones.phone_key(): the lookup
    salutation: Mapped[str] = mapped_column(String(16), default="")  # 先生 | 女士 | "" (张先生 / 李女士)
    vip: Mapped[bool] = mapped_column(Boolean, default=False)
    notes: Mapped[str] = mapped_column(Text, default="")
    timezone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CustomerChange(Base):
    """The history of one customer's record: who changed which field when (the desktop, an import)."""

    __tablename__ = "customer_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    changed_by: Mapped[str] = mapped_column(String(100))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    change: Mapped[dict[str, Any]] = mapped_column(JSON)  # field -> [before, after]


AGENT_STATES = ("ready", "not_ready", "ringing", "on_call", "wrap_up", "offline")


class AgentStateSpan(Base):
    """One stretch of time an agent spent in one state (就绪 / 小休 with its reason / 振铃 / 通话中 / 话后处理);
    ``ended_at`` is empty while it lasts. The scorecards' ready, talk, wrap-up and not-ready times come from
    these rows."""

    __tablename__ = "agent_states"
    __table_args__ = (Index("ix_agent_states_extension_started", "agent_extension", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_extension: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32), default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TeamCall(Base):
    """One call to the team number, however many desks it rang: the caller's Call-ID is the same on every desk
    Kamailio forked it to, so the first desk to see it adds the row and every desk updates the same one.

    ``outcome`` is set by the desk that answered (``answered``; ``overflow`` while the overflow desk has it,
    then ``overflow_callback`` or ``overflow_no_callback``). Taking the empty outcome is how one desk, and only
    one, wins a call two desks answer in the same instant. A call nobody answered has no outcome; the agent
    desks note when its ringing stopped (``ring_ended_at``), and it counts as abandoned once no overflow desk
    took it (see :mod:`contactcenter.storage.team_calls`)."""

    __tablename__ = "team_calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    sip_call_id: Mapped[str] = mapped_column(String(255), unique=True)
    team_number: Mapped[str] = mapped_column(String(16))
    remote_number: Mapped[str] = mapped_column(String(64), default="")
    arrived_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    outcome: Mapped[str | None] = mapped_column(String(24))
    answered_by: Mapped[str] = mapped_column(String(64), default="")
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ring_ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    callback_id: Mapped[int | None] = mapped_column(ForeignKey("callbacks.id", ondelete="SET NULL"))


class Call(Base):
    """One phone call, inbound or outbound, with the timestamps the service standard is judged on."""

    __tablename__ = "calls"
    __table_args__ = (  # a number's / a customer's newest calls, read straight off the index (screen pop)
        Index("ix_calls_remote_number_invited_at", "remote_number", "invited_at"),
        Index("ix_calls_customer_id_invited_at", "customer_id", "invited_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sip_call_id: Mapped[str] = mapped_column(String(255), unique=True)
    direction: Mapped[str] = mapped_column(String(16))  # inbound | outbound
    remote_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    invited_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ringing_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rings_before_answer: Mapped[int | None] = mapped_column(Integer)
    hung_up_first: Mapped[str | None] = mapped_column(String(16))  # customer | agent | system
    disposition: Mapped[str] = mapped_column(String(32), default="in_progress")
    purpose: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str | None] = mapped_column(String(32))
    notes: Mapped[str] = mapped_column(Text, default="")  # the agent's wrap-up (话后处理)
    resolution: Mapped[str] = mapped_column(Text, default="")
    complaint: Mapped[bool] = mapped_column(Boolean, default=False)
    wrapped_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    wrapped_up_by: Mapped[str] = mapped_column(String(100), default="")
    compliance_score: Mapped[float | None] = mapped_column(Float)  # None: not checked (see unchecked_reason)
    # why the call has no score (records.UNCHECKED_REASONS), and audio the recogniser never heard (partly checked)
    unchecked_reason: Mapped[str] = mapped_column(String(32), default="", server_default="")
    dropped_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # the score once reviewers' verdicts are applied (storage/reviews.py): a finding a reviewer disagreed with
    # turns its rule's verdict round; None until a review, or for a call stored before rule results were kept
    reviewed_score: Mapped[float | None] = mapped_column(Float)
    # hold_start, hold_end, transfer -> call times in seconds: the reviewer's timeline marks them
    events: Mapped[dict[str, list[float]]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    # how the call was talked (records.ConversationMeasures as JSON): talk time per leg, overlap, silence,
    # interruptions, speech rate, for the call's page and the scorecards. SQL NULL (not JSON null) when no audio
    # was analysed, so that a figure nobody measured stays out of every sum; a key inside is null when that one
    # measure is not known (a one-leg recording has no overlap)
    conversation: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    recording_path: Mapped[str] = mapped_column(String(500), default="")  # under [general] data_dir
    # what of the call's personal data was removed, and why: {"recording" | "transcript" | "personal":
    # "retention" | "erasure"} (DATA_PARTS, REMOVAL_REASONS), so a page says "deleted", not "missing"
    data_removed: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    agent: Mapped[Agent | None] = relationship()
    customer: Mapped[Customer | None] = relationship()
    utterances: Mapped[list[Utterance]] = relationship(
        back_populates="call", order_by="Utterance.start_s", cascade="all, delete-orphan"
    )
    rule_hits: Mapped[list[RuleHit]] = relationship(
        back_populates="call", order_by="RuleHit.at_s", cascade="all, delete-orphan"
    )
    rule_results: Mapped[list[RuleResultRow]] = relationship(
        back_populates="call", order_by="RuleResultRow.id", cascade="all, delete-orphan"
    )


class Utterance(Base):
    """One recognised segment of one leg of a call."""

    __tablename__ = "utterances"
    __table_args__ = (Index("ix_utterances_call_start", "call_id", "start_s"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    leg: Mapped[str] = mapped_column(String(16))  # agent | customer
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)

    call: Mapped[Call] = relationship(back_populates="utterances")


class RuleHit(Base):
    """A rule's finding on a call: a violation, a satisfied requirement or a requirement missed."""

    __tablename__ = "rule_hits"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    rule_id: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # violation | satisfied | missing
    severity: Mapped[str] = mapped_column(String(16), default="major")
    leg: Mapped[str | None] = mapped_column(String(16))
    at_s: Mapped[float | None] = mapped_column(Float)
    end_s: Mapped[float | None] = mapped_column(Float)  # a finding that is a stretch (an overlap, a silence): its end
    matched_text: Mapped[str] = mapped_column(Text, default="")
    live: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    call: Mapped[Call] = relationship(back_populates="rule_hits")


class RuleResultRow(Base):
    """A rule's verdict on a call as the machine gave it, with the weight it counted for: every rule that
    applied to the call, passed or failed (a rule that did not apply has no row). The score is these
    weights' passed share; reviewers' verdicts are applied to them for the reviewed score."""

    __tablename__ = "rule_results"
    __table_args__ = (UniqueConstraint("call_id", "rule_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    rule_id: Mapped[str] = mapped_column(String(100), index=True)
    passed: Mapped[bool] = mapped_column(Boolean)
    severity: Mapped[str] = mapped_column(String(16), default="major")
    weight: Mapped[float] = mapped_column(Float, default=1.0)

    call: Mapped[Call] = relationship(back_populates="rule_results")


class Ticket(Base):
    """工单: what the customer needed and what the desk owes them (R5, R8, R9)."""

    __tablename__ = "tickets"
    __table_args__ = (
        UniqueConstraint("call_id", "source", name="uq_tickets_call_source"),
        Index("ix_tickets_caller_phone_status", "caller_phone", "status"),  # a number's open tickets (screen pop)
        Index("ix_tickets_customer_id_status", "customer_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    source: Mapped[str] = mapped_column(String(64), default="manual")  # who made it: a plugin name or "manual"
    caller_name: Mapped[str] = mapped_column(String(100), default="")
    caller_phone: Mapped[str] = mapped_column(String(64), default="")
    category: Mapped[str] = mapped_column(String(32), index=True)  # 咨询 | 投诉 | 报修 | ...
    purpose: Mapped[str] = mapped_column(Text, default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    compliance_summary: Mapped[str] = mapped_column(Text, default="")
    resolution: Mapped[str] = mapped_column(Text, default="")
    wrapped_up: Mapped[bool] = mapped_column(Boolean, default=False)  # False: made by machine, never wrapped up
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open|in_progress|resolved|closed
    priority: Mapped[str] = mapped_column(String(16), default="normal")  # low | normal | high | urgent
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    escalation_note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    call: Mapped[Call | None] = relationship()
    customer: Mapped[Customer | None] = relationship()
    assignee: Mapped[Agent | None] = relationship()


CALLBACK_STATES = ("pending", "due", "in_progress", "done", "failed", "cancelled")
CALLBACK_KINDS = ("next_day", "complaint", "compliance", "survey", "manual", "overflow")


class Callback(Base):
    """A promised call back to a customer (R8, R10); the database row is the source of truth.

    ``pending`` until ``due_at``; the scheduler then moves it to ``due`` exactly once (a conditional update,
    so two schedulers cannot both fire it) and publishes ``callback_due``; ``in_progress`` while the desk
    dials; ``done``, ``failed`` (attempts used up) or ``cancelled``. A missed attempt puts it back to
    ``pending`` at ``due_at`` + the spacing. ``job_due_at`` is the due time the scheduler has a job for.
    """

    __tablename__ = "callbacks"
    __table_args__ = (
        UniqueConstraint("call_id", "kind"),
        UniqueConstraint("ticket_id", "kind"),
        Index("ix_callbacks_phone_state", "phone", "state"),  # a number's open callbacks (screen pop)
        Index("ix_callbacks_customer_id_state", "customer_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    phone: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16), default="manual")
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"), index=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    owner_extension: Mapped[str] = mapped_column(String(64), default="")
    owner_only: Mapped[bool] = mapped_column(Boolean, default=False)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    spacing_minutes: Mapped[int] = mapped_column(Integer, default=60)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    last_outcome: Mapped[str] = mapped_column(String(32), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    job_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SchedulerLease(Base):
    """Who may run the callback scheduler now: one holder, renewed while alive, taken over once expired."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxMessage(Base):
    """A message a plugin must deliver to an outside system (a CRM), kept until it is delivered."""

    __tablename__ = "plugin_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    plugin: Mapped[str] = mapped_column(String(100), index=True)
    topic: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200), default="")  # what the message is about, for idempotency
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SurveyResponse(Base):
    """One answer to one satisfaction-survey question (R11), or the reason there is none."""

    __tablename__ = "survey_responses"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    callback_id: Mapped[int | None] = mapped_column(ForeignKey("callbacks.id"), index=True)
    question_key: Mapped[str] = mapped_column(String(64))
    answer: Mapped[int | None] = mapped_column(Integer)  # 1..5, None when not answered
    outcome: Mapped[str] = mapped_column(String(16), default="answered")  # answered|invalid|timeout|skipped|hung_up
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class UndeliveredEvent(Base):
    """A hook call a plugin did not complete (it raised or timed out), kept so it can be replayed."""

    __tablename__ = "undelivered_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    plugin: Mapped[str] = mapped_column(String(100), index=True)
    hook: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


WEB_ROLES = ("reviewer", "supervisor", "admin")  # each may do all the roles before it may do


class WebUser(Base):
    """A person who signs in to the reviewer console; the password is kept only as an Argon2 hash."""

    __tablename__ = "web_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100), default="")
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebSession(Base):
    """A signed-in browser: the cookie's token is stored only as its SHA-256, with an expiry."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    user: Mapped[WebUser] = relationship()


class SignInThrottle(Base):
    """Failed sign-ins to the console counted per user name (as typed, so unknown names are counted the same)
    and per client address, and the lock they lead to. In the database, not in memory, so that a restart does
    not forget a lock and every console process on the same database counts the same failures."""

    __tablename__ = "sign_in_throttles"

    scope: Mapped[str] = mapped_column(String(8), primary_key=True)  # "user" | "address"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # the user name as typed, or the address
    failures: Mapped[int] = mapped_column(Integer, default=0)  # since window_start
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    lockouts: Mapped[int] = mapped_column(Integer, default=0)  # locks in a row: each lasts twice the one before
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SignInAttempt(Base):
    """Every sign-in to the console, for audit: the user name as typed, the client address, when, and the
    outcome (ok, wrong_password, unknown_user, disabled, locked, busy). Never the password."""

    __tablename__ = "sign_in_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    address: Mapped[str] = mapped_column(String(64), default="")
    outcome: Mapped[str] = mapped_column(String(16))


class Review(Base):
    """A QA reviewer's verdict on a call's automatic findings: agree or disagree per rule, and a comment."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("web_users.id"), index=True)
    verdicts: Mapped[dict[str, Any]] = mapped_column(JSON)  # rule_id -> "agree" | "disagree"
    reasons: Mapped[dict[str, str]] = mapped_column(
        JSON, default=dict, server_default=text("'{}'")
    )  # why, per disagree
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    reviewer: Mapped[WebUser] = relationship()


class LiveEvent(Base):
    """What happens on a call while it is in progress (ringing, answered, an utterance, an alert, ended),
    written by the desk and streamed to supervisors' live view, from any number of desk processes.

    Keyed by the SIP Call-ID: the call has no stored id until it ends. Kept ``[web] live_keep_hours``.
    """

    __tablename__ = "live_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    sip_call_id: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # ringing | answered | utterance | alert | ended
    agent_extension: Mapped[str] = mapped_column(String(64), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class RuleOverride(Base):
    """An admin's change to one rule of the rules file, made in the console and followed by every desk from
    its next call: the rule switched off, or its severity, weight or phrases replaced. A column left empty
    means "as the file says"; no row means the rule is as in the file."""

    __tablename__ = "rule_overrides"

    rule_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    severity: Mapped[str | None] = mapped_column(String(16))
    weight: Mapped[float | None] = mapped_column(Float)
    phrases: Mapped[list[str] | None] = mapped_column(JSON)
    changed_by: Mapped[str] = mapped_column(String(100))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RuleChange(Base):
    """The history of rule changes, for audit: who changed which rule when, each field's before and after."""

    __tablename__ = "rule_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(100), index=True)
    changed_by: Mapped[str] = mapped_column(String(100))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    change: Mapped[dict[str, Any]] = mapped_column(JSON)  # field -> [before, after]


class AccessLog(Base):
    """Who read customers' data in the console: a call's page or API answer, its recording, a customer's
    record, an export (PIPL: access to personal information is recorded). Written by the console, never
    changed by it: no page or API route edits or deletes a row."""

    __tablename__ = "access_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(32))  # call, recording, customer, customers, export
    target: Mapped[str] = mapped_column(String(300))  # the path and query that was read


#: The parts of a call's personal data that are removed on their own (Call.data_removed's keys).
DATA_PARTS = ("recording", "transcript", "personal")
#: Why data was removed: its retention period ran out, or the customer asked (Call.data_removed's values).
REMOVAL_REASONS = ("retention", "erasure")


class DataRemoval(Base):
    """One retention purge or erasure request carried out: when, by whom, and how much it removed, so a
    company can show a regulator that it deletes. It never holds the erased number or anything else that
    would identify the customer again: ``reference`` is the request's own reference (a ticket number)."""

    __tablename__ = "data_removals"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    reason: Mapped[str] = mapped_column(String(16))  # REMOVAL_REASONS
    done_by: Mapped[str] = mapped_column(String(100), default="")  # the scheduler, or who ran the command
    reference: Mapped[str] = mapped_column(String(200), default="")
    counts: Mapped[dict[str, int]] = mapped_column(JSON)  # what -> how many (removal.COUNT_LABELS)


#: A queued review's states (vocabulary [review_state]).
REVIEW_STATES = ("pending", "in_review", "reviewed", "disputed")
#: Why a call is in the queue: a critical rule failed, a complaint, the random sample, or the team lead's
#: second look for calibration.
QUEUE_REASONS = ("critical", "complaint", "sample", "calibration")


class ReviewTask(Base):
    """One call in one reviewer's queue for a day (质检任务). A call a supervisor also reviews for
    calibration has a second task with reason "calibration"."""

    __tablename__ = "review_tasks"
    __table_args__ = (
        UniqueConstraint("call_id", "reviewer_id"),
        Index("ix_review_tasks_reviewer_day", "reviewer_id", "day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    day: Mapped[str] = mapped_column(String(10), index=True)  # the calls' local day, YYYY-MM-DD
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("web_users.id"))
    reason: Mapped[str] = mapped_column(String(16))  # QUEUE_REASONS
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # REVIEW_STATES
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Dispute(Base):
    """An agent's appeal (申诉) against a finding, decided by a team lead: the decision is final and kept."""

    __tablename__ = "disputes"
    __table_args__ = (UniqueConstraint("call_id", "rule_id"),)  # one per finding: the lead's decision is final

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    rule_id: Mapped[str] = mapped_column(String(100))
    raised_by: Mapped[str] = mapped_column(String(100))  # the agent (extension or user name)
    reason: Mapped[str] = mapped_column(Text)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open | upheld | rejected
    decided_by: Mapped[str] = mapped_column(String(100), default="")
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision: Mapped[str] = mapped_column(Text, default="")
