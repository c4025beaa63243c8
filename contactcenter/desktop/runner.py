"""Bringing the agent's desktop up inside `contactcenter run`, and down again.

In two steps because the desk and the desktop need each other: :func:`prepare` makes the agent's state and the
hub the desk reports to; once the desk exists, :func:`serve` starts the page on ``[agent] listen_ip:port``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contactcenter.desktop.hub import DeskHub
from contactcenter.desktop.server import DeskTokens, DesktopServer, create_desktop_app
from contactcenter.desktop.service import AgentDesktop
from contactcenter.settings import Settings
from contactcenter.speech.rules import RuleSet
from contactcenter.storage.database import Database
from contactcenter.telephony.agent_state import AgentState
from contactcenter.telephony.desk import Desk

log = logging.getLogger(__name__)
Publish = Callable[..., None]


@dataclass
class Desktop:
    """The running desktop of one desk."""

    agent: AgentState
    hub: DeskHub
    service: AgentDesktop | None = None
    server: DesktopServer | None = None
    tokens: DeskTokens | None = None

    @property
    def url(self) -> str:
        """The address `run` prints, with the sign-in token."""
        assert self.server is not None and self.tokens is not None
        config = self.server.config
        return f"http://{config.host}:{config.port}/?token={self.tokens.token}"

    def publish_through(self, publish: Publish) -> Publish:
        """The desk's publish, with the hub seeing each event first (the page's live assist, no queue)."""
        hub = self.hub

        def both(hook: str, **arguments: Any) -> None:
            hub.observe(hook, arguments)
            publish(hook, **arguments)

        return both

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
        if self.server is not None:
            self.server.stop()
        self.hub.close()


def _warm_up(service: AgentDesktop) -> None:
    try:
        service.lookup("10000000000")
    except Exception:
        log.warning("screen-pop warm-up failed; the first call's lookup will tell", exc_info=True)


def prepare(
    settings: Settings, rules: Callable[[], RuleSet | None], *, speech_on: bool, speech_off_reason: str = ""
) -> Desktop:
    agent_settings = settings.agent
    agent = AgentState(
        agent_settings.not_ready_reasons, agent_settings.wrap_up_seconds, start_ready=agent_settings.start_ready
    )
    hub = DeskHub(settings, agent.status, rules=rules, speech_on=speech_on, speech_off_reason=speech_off_reason)
    return Desktop(agent, hub)


def serve(
    desktop: Desktop,
    settings: Settings,
    database: Database | None,
    desk: Desk,
    publish: Publish,
    token: str | None = None,
) -> Desktop:
    """Start the desktop for ``desk``; OSError when its port cannot be had."""
    service = AgentDesktop(settings, database, desk, desktop.agent, desktop.hub, publish)
    desktop.hub.lookup = service.lookup if database is not None else None
    tokens = DeskTokens(token)
    server = DesktopServer(create_desktop_app(service, tokens), settings.agent.listen_ip, settings.agent.port)
    server.start()
    service.start()
    if database is not None:  # the first screen-pop of a process prepares its queries (~30 ms): not on a caller
        threading.Thread(target=_warm_up, args=(service,), name="screen-pop warm-up", daemon=True).start()
    desktop.service, desktop.server, desktop.tokens = service, server, tokens
    return desktop
