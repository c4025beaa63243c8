"""settings.toml → validated, typed settings.

This is the one place the configuration is read. Everything else receives a frozen :class:`Settings`.
Errors are collected into a :class:`SettingsError` that names the file (or environment variable), the
key and what was expected, so the CLI can print them and exit non-zero without a traceback.

Environment variables override the file: ``CONTACTCENTER_<SECTION>__<KEY>=value`` (a double underscore
between section and key, e.g. ``CONTACTCENTER_DATABASE__URL=postgresql+psycopg://...``). The value is read
as a TOML value when it parses as one (``2``, ``true``, ``["tickets"]``) and as a plain string otherwise.
``CONTACTCENTER_SETTINGS`` names the settings file. Secrets never live in the file: the SIP password is
read from the variable named by ``[sip] password_env``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

ENV_PREFIX = "CONTACTCENTER_"
SETTINGS_PATH_ENV = "CONTACTCENTER_SETTINGS"
DEFAULT_SETTINGS_FILE = "settings.toml"


class SettingsError(Exception):
    """The settings could not be loaded; ``problems`` holds one human-readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base_dir", "."))


def _resolve(value: Path, info: ValidationInfo) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (_base_dir(info) / path).resolve()


def _existing_file(value: Path, info: ValidationInfo) -> Path:
    path = _resolve(value, info)
    if not path.is_file():
        raise ValueError(f"expected an existing file, but {path} does not exist")
    return path


def _existing_dir(value: Path, info: ValidationInfo) -> Path:
    path = _resolve(value, info)
    if not path.is_dir():
        raise ValueError(f"expected an existing directory, but {path} does not exist")
    return path


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"expected an IANA time zone such as 'Asia/Shanghai', got {value!r}") from None
    return value


RelativePath = Annotated[Path, AfterValidator(_resolve)]
ExistingFile = Annotated[Path, AfterValidator(_existing_file)]
ExistingDir = Annotated[Path, AfterValidator(_existing_dir)]
TimeZoneName = Annotated[str, AfterValidator(_timezone)]
Port = Annotated[int, Field(ge=1, le=65535)]


def _digits_as_text(value: object) -> object:
    """``user = 1001`` in the file, or CONTACTCENTER_SIP__USER=1001 (read as TOML, so a number), means the
    digits 1001: an extension is text, and a leading zero would matter."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else value


PhoneNumberText = Annotated[str, BeforeValidator(_digits_as_text)]


class Section(BaseModel):
    """A settings table: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GeneralSettings(Section):
    timezone: TimeZoneName = "Asia/Shanghai"
    data_dir: RelativePath = Path("data")
    record_calls: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class CompanySettings(Section):
    name: str = Field(min_length=1)
    department: str = ""
    spoken_names: list[str] = Field(default_factory=list)

    @property
    def names_said(self) -> list[str]:
        """How agents say the company's name (the greeting rule accepts any); the full name by default."""
        return self.spoken_names or [self.name]


def _optional_file(value: str, info: ValidationInfo) -> str:
    """An existing file's resolved path, or "" (the setting is optional and TOML has no null)."""
    return str(_existing_file(Path(value), info)) if value else ""


OptionalFile = Annotated[str, AfterValidator(_optional_file)]


class SipSettings(Section):
    server: str = ""
    port: Port = 5060
    user: PhoneNumberText = Field(default="1001", min_length=1)
    password_env: str = "CONTACTCENTER_SIP_PASSWORD"
    local_ip: str = "127.0.0.1"
    local_port: Port = 5062
    rtp_port_low: Port = 10000
    rtp_port_high: Port = 20000
    # RFC 3261 timers over UDP: a 200 OK is resent at t1, doubling up to t2, until the ACK (64*t1 at most)
    t1_ms: int = Field(default=500, ge=10, le=10000)
    t2_ms: int = Field(default=4000, ge=10, le=60000)
    # signalling: "tls" (one verified connection to the registrar/PBX, kept open and reused), "tcp" or "udp"
    transport: Literal["udp", "tcp", "tls"] = "udp"
    tls_ca_file: OptionalFile = ""  # PEM of the CAs to trust; empty: the system store (or the loopback's own)
    media_encryption: Literal["none", "srtp"] = "none"  # "srtp": SDES keys (RFC 4568) in the SDP, so only over TLS
    # the RTP sender and receiver at this SCHED_FIFO priority when permitted (0: normal): telephony/rtp_loop.py
    media_realtime_priority: int = Field(default=10, ge=0, le=99)
    # outgoing RTP sent on time by a process of its own, handed each packet shortly before it is due
    # (telephony/media_sender.py); false: sent by a thread of the desk's process
    media_sender_process: bool = True
    # with the sender process: each packet is built this long before it is due (what callers hear comes this much
    # later; a desk busier than this late cannot hold a packet back)
    media_lead_ms: int = Field(default=40, ge=5, le=200)

    @property
    def password(self) -> str | None:
        """The SIP password, read from the environment at the moment it is needed, never from the file."""
        return os.environ.get(self.password_env)

    @property
    def uses_local_registrar(self) -> bool:
        """No PBX named: the phone starts its own Kamailio registrar on loopback."""
        return not self.server

    @model_validator(mode="after")
    def _rtp_range(self) -> SipSettings:
        if self.rtp_port_low >= self.rtp_port_high:
            raise ValueError("rtp_port_low must be below rtp_port_high")
        if self.t1_ms > self.t2_ms:
            raise ValueError("t1_ms must not be above t2_ms")
        if self.media_encryption == "srtp" and self.transport != "tls":
            raise ValueError(
                f'media_encryption = "srtp" needs transport = "tls" (it is "{self.transport}"): '
                "the SRTP keys travel in the SDP, which plain SIP would show to anyone on the path"
            )
        return self


class LocalRegistrarSettings(Section):
    listen_ip: Literal["127.0.0.1", "::1", "localhost"] = "127.0.0.1"
    port: Port = 5060
    kamailio: str = "kamailio"


class RingSettings(Section):
    answer_after_rings: int = Field(default=2, ge=1, le=3)
    ring_period_seconds: float = Field(default=5.0, gt=0, le=30)
    apology_after_rings: int = Field(default=3, ge=1)


class ScriptsSettings(Section):
    service_script: ExistingFile = Path("scripts_zh/service_script.toml")
    banned_phrases: ExistingFile = Path("scripts_zh/banned_phrases.txt")
    rules: ExistingFile = Path("scripts_zh/rules.toml")
    prompts_dir: ExistingDir = Path("scripts_zh/prompts")
    vocabulary: ExistingFile = Path("scripts_zh/vocabulary.toml")  # the Chinese name of every stored code


class SpeechSettings(Section):
    model_path: RelativePath = Path("models/vosk-model-small-cn-0.22")
    model_manifest: ExistingFile = Path("models/manifest.toml")
    redact_numbers: bool = True
    workers: int = Field(default=0, ge=0, le=64)  # 0: one per CPU core
    # recognition in worker processes forked after the model loads (sharing it), at lower CPU priority than
    # the desk's media threads; "thread": on threads of the desk process, as before
    backend: Literal["process", "thread"] = "process"
    worker_nice: int = Field(default=10, ge=0, le=19)  # added to the desk's niceness in the workers
    # the workers and the talk listener under SCHED_IDLE: only CPU time no normal process wants (the desk's
    # threads never wait behind them; recognition is what gives way when the machine is short)
    worker_idle: bool = True
    memory_per_leg_mb: float = Field(default=36.0, ge=0, le=4096)  # recognisers' memory per open leg; 0: no bound
    max_backlog_seconds: float = Field(default=30.0, gt=0, le=600)
    max_lag_seconds: float = Field(default=5.0, ge=0, le=600)  # live calls: drop what recognition is this late on
    silence_threshold_dbfs: float = Field(default=-45.0, ge=-90, le=0)
    silence_hangover_ms: int = Field(default=300, ge=0, le=5000)
    partial_stable_ms: int = Field(default=200, ge=0, le=5000)
    # the decoder's step (feature frames, 10 ms each): smaller alerts sooner on words said mid-utterance, for
    # more CPU (speech/recognizer.py has the figures); 0: what the model's conf/model.conf says (about 20)
    decoder_frames_per_chunk: int = Field(default=6, ge=0, le=200)
    # who talks when (talk time, overlaps, interruptions, dead air): WebRTC's VAD over an energy floor, or
    # the energy threshold alone; aggressiveness 0 (keeps most as speech) .. 3 (strictest)
    voice_activity: Literal["webrtc", "energy"] = "webrtc"
    vad_aggressiveness: int = Field(default=3, ge=0, le=3)


class DatabaseSettings(Section):
    url: str = ""

    def resolved_url(self, data_dir: Path) -> str:
        """The configured URL, or the embedded default: a SQLite file under the data directory."""
        return self.url or f"sqlite:///{data_dir / 'contactcenter.db'}"


class PluginsSettings(Section):
    """``[plugins]``: which plugins run, and each plugin's own table ``[plugins.<name>]``."""

    enabled: list[str] = Field(default_factory=list)
    hook_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _collect_plugin_tables(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        known = set(cls.model_fields)
        data = dict(data)
        options = dict(data.pop("options", {}) or {})
        for key in [k for k in data if k not in known]:
            if isinstance(data[key], Mapping):
                options[key] = dict(data.pop(key))
        data["options"] = options
        return data


DeviceChoice = Annotated[int | str, Field(union_mode="left_to_right")]


class HeadsetSettings(Section):
    """The agent's headset: the caller in the agent's ears, the agent's microphone on the line."""

    enabled: bool = True
    input_device: DeviceChoice = "default"
    output_device: DeviceChoice = "default"
    sample_rate: int = Field(default=0, ge=0, le=192000)  # 0: the device's own rate
    block_ms: int = Field(default=10, ge=2, le=40)
    buffer_ms: int = Field(default=30, ge=10, le=200)
    hold_music: ExistingFile | None = None  # a WAV looped to the caller on hold; unset: silence
    wait_for_headset: bool = True


def _clock_time(value: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError(f"expected a time of day HH:MM (00:00 to 23:59), got {value!r}")
    return value


def _iso_date(value: str) -> str:
    from datetime import date

    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}") from None
    return value


ClockTime = Annotated[str, AfterValidator(_clock_time)]
IsoDate = Annotated[str, AfterValidator(_iso_date)]


WebRole = Literal["reviewer", "supervisor", "admin"]


def _admin_only() -> list[WebRole]:
    return ["admin"]


class WebSettings(Section):
    """The reviewer console (`contactcenter web`)."""

    listen_ip: str = "127.0.0.1"
    port: Port = 8080
    session_minutes: int = Field(default=480, ge=5, le=7 * 24 * 60)
    secure_cookies: bool = False  # true behind HTTPS: the session cookie is never sent in clear
    unmasked_roles: list[WebRole] = Field(default_factory=_admin_only)
    page_size: int = Field(default=50, ge=10, le=500)
    pass_score: float = Field(default=80.0, ge=0, le=100)  # a call at or above it passes QA (scorecards)
    live_keep_hours: int = Field(default=24, ge=1, le=24 * 30)  # how long the live view's events are kept
    # Sign-in throttle: this many failures within the window lock the user name (or the client address) for
    # sign_in_lock_minutes; each further lock in a row lasts twice the one before, up to the maximum.
    sign_in_user_failures: int = Field(default=5, ge=1, le=100)
    sign_in_address_failures: int = Field(default=30, ge=1, le=100_000)
    sign_in_window_minutes: int = Field(default=15, ge=1, le=24 * 60)
    sign_in_lock_minutes: int = Field(default=15, ge=1, le=24 * 60)
    sign_in_lock_max_minutes: int = Field(default=24 * 60, ge=1, le=30 * 24 * 60)
    sign_in_hash_slots: int = Field(default=2, ge=1, le=16)  # password checks at once (64 MiB of memory each)
    sign_in_wait_seconds: float = Field(default=3.0, gt=0, le=60)  # then "请稍后再试" (429)
    sign_in_log_days: int = Field(default=180, ge=1, le=10 * 365)  # how long the sign-in log is kept

    @model_validator(mode="after")
    def _lock_ceiling(self) -> WebSettings:
        if self.sign_in_lock_max_minutes < self.sign_in_lock_minutes:
            raise ValueError("sign_in_lock_max_minutes must be at least sign_in_lock_minutes")
        return self


WrapUpField = Literal["caller_name", "company", "phone", "purpose"]


def _usual_required_fields() -> list[WrapUpField]:
    return ["caller_name", "phone", "purpose"]


class AgentSettings(Section):
    """The agent's desktop (坐席工作台), served by `contactcenter run` itself: it holds the call."""

    enabled: bool = True
    listen_ip: str = "127.0.0.1"  # loopback: the agent's own machine
    port: Port = 8090
    wrap_up_seconds: int = Field(default=60, ge=0, le=3600)  # 话后处理: then back to ready on its own
    not_ready_reasons: list[str] = Field(default_factory=lambda: ["休息", "培训", "会议", "用餐"], min_length=1)
    categories: list[str] = Field(default_factory=lambda: ["咨询", "投诉", "报修", "建议", "其他"], min_length=1)
    required_fields: list[WrapUpField] = Field(default_factory=_usual_required_fields)
    start_ready: bool = True  # the desk starts 就绪; false: 小休 until the agent says ready

    @model_validator(mode="after")
    def _distinct(self) -> AgentSettings:
        for name in ("not_ready_reasons", "categories"):
            values = getattr(self, name)
            if len(set(values)) != len(values) or any(not value.strip() for value in values):
                raise ValueError(f"{name} must be distinct and not blank")
            if any(len(value) > 32 for value in values):  # agent_states.reason and calls.category hold 32
                raise ValueError(f"{name}: each at most 32 characters")
        return self


class TeamSettings(Section):
    """A service number many desks share (热线): the embedded Kamailio forks its calls to the ready agents and
    sends what nobody answers to an overflow desk, so the three-ring promise is kept for the caller."""

    number: PhoneNumberText = Field(default="", pattern=r"^[0-9]{0,16}$")  # "" = no team line
    role: Literal["agent", "overflow"] = "agent"  # overflow: answers at once, offers a callback; no headset
    strategy: Literal["ring_all", "longest_idle"] = "ring_all"
    ring_seconds: float | None = Field(default=None, gt=0, le=90)  # agents ring this long, then overflow
    overflow_number: PhoneNumberText = Field(
        default="1999", pattern=r"^[0-9]{1,16}$"
    )  # what overflow desks register as
    registration_seconds: int = Field(default=60, ge=10, le=3600)  # a dead desk's team contact lapses this fast
    keys_wait_seconds: float = Field(default=8.0, gt=0, le=60)  # overflow: time given to press a key

    @property
    def enabled(self) -> bool:
        return bool(self.number)


class CallbackSettings(Section):
    after_service_call: bool = True
    service_categories: list[str] = Field(default_factory=lambda: ["报修"])
    after_complaint: bool = True
    complaint_categories: list[str] = Field(default_factory=lambda: ["投诉"])
    after_failed_compliance: bool = False
    complaint_within_hours: float = Field(default=24, gt=0)
    next_day_time: ClockTime = "10:00"
    working_hours_start: ClockTime = "09:00"
    working_hours_end: ClockTime = "18:00"
    max_attempts: int = Field(default=3, ge=1, le=20)
    retry_spacing_minutes: int = Field(default=60, ge=1)
    owner_only_minutes: int = Field(default=120, ge=0)
    extra_days_off: list[IsoDate] = Field(default_factory=list)
    extra_working_days: list[IsoDate] = Field(default_factory=list)
    scheduler_in_desk: bool = False
    auto_dial: bool = False
    misfire_grace_minutes: int = Field(default=24 * 60, ge=1)
    scheduler_lease_seconds: float = Field(default=30.0, ge=1, le=600)
    sweep_seconds: float = Field(default=30.0, ge=0.5, le=3600)

    @model_validator(mode="after")
    def _hours_in_order(self) -> CallbackSettings:
        if not self.working_hours_start < self.working_hours_end:
            raise ValueError("working_hours_start must be before working_hours_end")
        if not self.working_hours_start <= self.next_day_time < self.working_hours_end:
            raise ValueError("next_day_time must fall within the working hours")
        return self


class ReviewSettings(Section):
    """The reviewers' daily queue (质检任务): which calls are checked by a person, and by whom. Built each
    night for the day before by whichever process runs the scheduler (`contactcenter review build` by hand)."""

    critical_failures: bool = True  # every call that failed a critical rule
    complaints: bool = True  # every complaint call (category in [callbacks] complaint_categories, or flagged)
    sample_percent: float = Field(default=10.0, ge=0, le=100)  # 抽检: this share of the other checked calls
    per_agent_per_day: int = Field(default=0, ge=0, le=1000)  # instead: this many of each agent's (0: use percent)
    seed: str = "contactcenter"  # the day's sample is drawn from this and the date: the same day, the same sample
    assign: Literal["round_robin", "by_team"] = "round_robin"
    teams: dict[str, list[str]] = Field(default_factory=dict)  # by_team: agents' team -> reviewers' user names
    double_review_percent: float = Field(default=10.0, ge=0, le=100)  # also to a supervisor, for calibration
    build_time: ClockTime = "01:00"  # local time of the nightly build


class RetentionSettings(Section):
    """How long personal data is kept (PIPL: no longer than the purpose needs). Older data is purged daily
    by whichever process runs the scheduler; 0 keeps it for ever. Scores, findings and counts stay, without
    anything that identifies the caller."""

    recordings_days: int = Field(default=180, ge=0, le=100 * 365)  # the call recordings (WAV files)
    transcripts_days: int = Field(default=365, ge=0, le=100 * 365)  # what was said, and the findings' quoted words
    # numbers, names, purposes, notes, a recording or transcript still left; closed tickets and callbacks;
    # customers not in touch since; delivered plugin messages
    personal_days: int = Field(default=730, ge=0, le=100 * 365)
    purge_time: ClockTime = "03:30"  # local time of the daily purge


class Settings(Section):
    """The whole settings file. ``source`` is where it was read from (for messages and relative paths)."""

    general: GeneralSettings = GeneralSettings()
    company: CompanySettings
    sip: SipSettings = SipSettings()
    local_registrar: LocalRegistrarSettings = LocalRegistrarSettings()
    ring: RingSettings = RingSettings()
    scripts: ScriptsSettings
    speech: SpeechSettings
    database: DatabaseSettings = DatabaseSettings()
    plugins: PluginsSettings = PluginsSettings()
    headset: HeadsetSettings = HeadsetSettings()
    callbacks: CallbackSettings = CallbackSettings()
    web: WebSettings = WebSettings()
    agent: AgentSettings = AgentSettings()
    team: TeamSettings = TeamSettings()
    retention: RetentionSettings = RetentionSettings()
    review: ReviewSettings = ReviewSettings()
    source: Path = Path(DEFAULT_SETTINGS_FILE)

    @property
    def database_url(self) -> str:
        return self.database.resolved_url(self.general.data_dir)

    @property
    def team_ring_seconds(self) -> float:
        """How long a team call rings the agents before it overflows: ``[team] ring_seconds``, else half a
        ring after the ring at which desks answer, so a desk that can answer does, and the overflow desk still
        answers within three rings."""
        ring = self.ring
        return self.team.ring_seconds or (ring.answer_after_rings + 0.5) * ring.ring_period_seconds

    @model_validator(mode="after")
    def _team_within_three_rings(self) -> Settings:
        team, ring = self.team, self.ring
        if not team.enabled:
            return self
        if team.number in (self.sip.user, team.overflow_number):
            raise ValueError("[team] number must differ from [sip] user and [team] overflow_number")
        promise = 3 * ring.ring_period_seconds
        if self.team_ring_seconds >= promise:
            raise ValueError(
                f"[team] ring_seconds ({self.team_ring_seconds:g} s) must be under three rings ({promise:g} s), "
                "or callers wait past three rings before the overflow desk answers"
            )
        return self


def settings_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The settings file to read: the explicit path, else $CONTACTCENTER_SETTINGS, else ./settings.toml."""
    return Path(explicit or os.environ.get(SETTINGS_PATH_ENV) or DEFAULT_SETTINGS_FILE)


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def environment_overrides(environ: Mapping[str, str]) -> dict[tuple[str, ...], tuple[str, Any]]:
    """``CONTACTCENTER_SECTION__KEY`` variables as {(section, key): (variable name, value)}."""
    overrides: dict[tuple[str, ...], tuple[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if all(path):
            overrides[path] = (name, _parse_env_value(raw))
    return overrides


def _apply(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    table = data
    for part in path[:-1]:
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise SettingsError([f"environment: {'.'.join(path)} cannot be set: {part} is not a table"])
    table[path[-1]] = value


def _describe(error: Mapping[str, Any], origin: str, allowed: Mapping[tuple[str, ...], list[str]]) -> str:
    loc = tuple(str(part) for part in error["loc"])
    section, key = (loc[0], ".".join(loc[1:])) if len(loc) > 1 else ("", loc[0] if loc else "")
    where = f"[{section}] {key}" if section and key else (f"[{section}]" if section else key)
    kind = error["type"]
    if kind == "extra_forbidden":
        known = ", ".join(allowed.get(loc[:-1], [])) or "none"
        return f"{origin}: {where}: unknown key (expected one of: {known})"
    if kind == "missing":
        return f"{origin}: {where}: missing (this key is required)"
    message = str(error["msg"]).removeprefix("Value error, ")
    got = error.get("input")
    suffix = "" if isinstance(got, (Mapping, list)) or got is None else f" (got {got!r})"
    return f"{origin}: {where}: {message}{suffix}" if where else f"{origin}: {message}{suffix}"


def _allowed_keys() -> dict[tuple[str, ...], list[str]]:
    keys: dict[tuple[str, ...], list[str]] = {(): [k for k in Settings.model_fields if k != "source"]}
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys[(name,)] = [k for k in annotation.model_fields if k != "options"]
    return keys


def load_settings(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, override from the environment and validate the settings; raise SettingsError on any problem."""
    file = settings_path(path)
    environ = os.environ if environ is None else environ
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError([f"{file}: settings file not found (set {SETTINGS_PATH_ENV} or pass --settings)"]) from None
    except UnicodeDecodeError as exc:
        raise SettingsError([f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError([f"{file}: not valid TOML: {exc}"]) from None
    overrides = environment_overrides(environ)
    for key_path, (_, value) in overrides.items():
        _apply(data, key_path, value)
    data.pop("source", None)
    try:
        return Settings.model_validate({**data, "source": file.resolve()}, context={"base_dir": file.resolve().parent})
    except ValidationError as exc:
        allowed = _allowed_keys()
        problems = []
        for error in exc.errors():
            loc = tuple(str(p) for p in error["loc"])
            variable = next((name for path_, (name, _) in overrides.items() if loc[: len(path_)] == path_), None)
            origin = f"environment variable {variable}" if variable else str(file)
            problems.append(_describe(error, origin, allowed))
        raise SettingsError(problems) from None
