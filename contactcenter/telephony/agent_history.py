"""The agent's state history: every change of :class:`~contactcenter.telephony.agent_state.AgentState` stored as
a span (:mod:`contactcenter.storage.agent_states`), on a thread of its own.

Used by the agent's desktop and by a team desk without one, so the scorecards and the wallboard see every
agent the same way. A database that fails is retried with the next change and never blocks a call.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import UTC, datetime

from contactcenter.storage.agent_states import close_open_spans, record_state
from contactcenter.storage.database import Database
from contactcenter.telephony.agent_state import AgentState, AgentStatus

log = logging.getLogger(__name__)
KEPT_WHILE_DOWN = 1000  # changes kept while the database is away; older ones are dropped


class AgentHistory:
    """Stores ``agent``'s state changes for ``extension`` from :meth:`start` until :meth:`stop`."""

    def __init__(self, database: Database | None, extension: str, agent: AgentState) -> None:
        self.database = database
        self.extension = extension
        self.agent = agent
        self._states: queue.Queue[AgentStatus | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        agent.add_listener(self._states.put)

    def start(self) -> None:
        """Close what a killed desk left open, store the state it starts in, and start the writer."""
        if self.database is not None:
            try:
                with self.database.session() as session:
                    close_open_spans(session, self.extension, datetime.now(UTC))
                    session.commit()
            except Exception:
                log.exception("agent state history: open spans could not be closed")
        self._states.put(self.agent.status)
        self._writer = threading.Thread(target=self._write_states, name="agent-states", daemon=True)
        self._writer.start()

    def stop(self) -> None:
        """The desk stops: the agent goes offline, and that is stored before the writer ends."""
        self.agent.go_offline()
        self._states.put(None)
        if self._writer is not None:
            self._writer.join(timeout=5)

    def _write_states(self) -> None:
        pending: list[AgentStatus] = []
        while True:
            status = self._states.get()
            if status is not None:
                pending.append(status)
            if self.database is not None and pending:
                try:
                    with self.database.session() as session:
                        for item in list(pending):
                            try:
                                record_state(session, self.extension, item.state, item.reason, at=item.since)
                            except ValueError as exc:  # cannot ever be stored: said once, not retried forever
                                log.error("agent state %s not stored: %s", item.state, exc)
                                pending.remove(item)
                        session.commit()
                    pending.clear()
                except Exception as exc:
                    log.error("agent state history not stored yet (%d changes kept): %s", len(pending), exc)
                    del pending[:-KEPT_WHILE_DOWN]
            if status is None:
                return
