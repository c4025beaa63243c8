"""The parts of one running desk (settings, database, plugins), built lazily and closed together."""

from __future__ import annotations

import logging
import os
from functools import cached_property
from pathlib import Path

from contactcenter.audio.voice_activity import VoiceActivitySettings
from contactcenter.hooks.host import PluginHost
from contactcenter.settings import Settings, load_settings
from contactcenter.speech.monitor import Backend, SpeechMonitor
from contactcenter.speech.rule_book import RuleBook
from contactcenter.speech.rules import RuleSet, load_rules
from contactcenter.speech.talk_activity import ActivitySettings
from contactcenter.speech.vosk_model import SpeechModel
from contactcenter.storage.database import Database
from contactcenter.vocabulary import Vocabulary


class App:
    """What a command needs, built on first use so that ``--help`` needs no settings file."""

    def __init__(self, settings_file: str | os.PathLike[str] | None = None) -> None:
        self.settings_file = Path(settings_file) if settings_file else None

    @cached_property
    def settings(self) -> Settings:
        settings = load_settings(self.settings_file)
        logging.getLogger().setLevel(settings.general.log_level)
        logging.getLogger("alembic").setLevel(logging.WARNING)  # its per-migration INFO lines are noise here
        return settings

    @cached_property
    def database(self) -> Database:
        return Database(self.settings.database_url)

    @cached_property
    def store(self) -> Database:
        """The database, checked to be at the newest schema (for commands that read or write calls)."""
        return self.database.require_current_schema()

    @cached_property
    def rules(self) -> RuleSet:
        """The service-script rules from [scripts] rules, with the company's spoken names filled in."""
        return load_rules(self.settings.scripts.rules, self.settings.company.names_said)

    @cached_property
    def rule_book(self) -> RuleBook:
        """The rules in force: the file's, with the changes admins made in the console (read at each call)."""
        return RuleBook(self.rules, self.database, self.settings.company.names_said)

    @cached_property
    def speech_monitor(self) -> SpeechMonitor:
        """The recogniser pool for live calls over the speech model at [speech] model_path (loaded once)."""
        return self._speech_monitor(self.settings.speech.backend)

    @cached_property
    def recording_monitor(self) -> SpeechMonitor:
        """The recogniser pool for recordings (audit, evaluate): on threads of this process, which has no
        call's media to protect; ``audit --workers`` spreads recordings over processes itself."""
        return self._speech_monitor("thread")

    def _speech_monitor(self, backend: Backend) -> SpeechMonitor:
        speech = self.settings.speech
        return SpeechMonitor(
            SpeechModel.load(speech.model_path, speech.decoder_frames_per_chunk),
            speech.workers,
            speech.max_backlog_seconds,
            speech.silence_threshold_dbfs,
            speech.silence_hangover_ms,
            ActivitySettings(VoiceActivitySettings(speech.voice_activity, speech.vad_aggressiveness)),
            backend=backend,
            max_lag_seconds=speech.max_lag_seconds,
            memory_per_leg_mb=speech.memory_per_leg_mb,
            worker_nice=speech.worker_nice,
            worker_idle=speech.worker_idle,
        )

    @cached_property
    def vocabulary(self) -> Vocabulary:
        """The Chinese names of stored codes ([scripts] vocabulary), with the rules' descriptions."""
        names = {rule.id: rule.spec.description for rule in self.rules.rules}
        return Vocabulary.load(self.settings.scripts.vocabulary).with_rules(names)

    @cached_property
    def plugins(self) -> PluginHost:
        """The enabled installed plugins and the built-in ones (``hooks.host.BUILT_IN_PLUGINS``)."""
        host = PluginHost(self.settings, self.database)
        host.load_entry_points()
        host.load_built_ins()
        return host

    def close(self) -> None:
        if "plugins" in self.__dict__:
            self.plugins.close()
        if "speech_monitor" in self.__dict__:
            self.speech_monitor.close()
        if "recording_monitor" in self.__dict__:
            self.recording_monitor.close()
        if "database" in self.__dict__:
            self.database.dispose()
