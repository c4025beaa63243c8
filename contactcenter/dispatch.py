"""Isolated delivery of event hooks: one worker per plugin, a time limit, and a record of every failure.

pluggy calls every implementation of a hook in turn on the caller's thread, so one plugin that raises
stops the rest and one that hangs stops the caller. For event hooks the desk instead calls each plugin's
implementation itself (honouring pluggy's argument-subset convention) on that plugin's own worker thread
and waits at most ``hook_timeout_seconds``. A failure is logged with the plugin's name and the hook call
is kept by :class:`UndeliveredLog` for replay. A plugin still stuck in an earlier call is not queued up
behind: the new event goes straight to the undelivered log.
"""

from __future__ import annotations

import inspect
import logging
import queue
import threading
import typing
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pluggy
from pydantic import TypeAdapter

from contactcenter import hookspecs
from contactcenter.storage.undelivered import UndeliveredLog

log = logging.getLogger(__name__)

INJECTED_ARGUMENTS = ("api",)


@cache
def _argument_adapters(hook: str) -> dict[str, TypeAdapter[Any]]:
    """JSON (de)serialisers for a hook's arguments, from the hookspec's annotations."""
    spec = getattr(hookspecs, hook)
    hints = typing.get_type_hints(spec, localns={"PluginAPI": object})
    return {
        name: TypeAdapter(hints[name])
        for name in inspect.signature(spec).parameters
        if name not in INJECTED_ARGUMENTS
    }


def encode_event(hook: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """A hook call's arguments as JSON-ready data (what the undelivered log stores)."""
    adapters = _argument_adapters(hook)
    return {name: adapters[name].dump_python(arguments[name], mode="json") for name in adapters}


def decode_event(hook: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`encode_event`: typed records again, ready to pass to the hook."""
    adapters = _argument_adapters(hook)
    return {name: adapters[name].validate_python(payload[name]) for name in adapters}


@dataclass
class Delivery:
    """What happened to one event: which plugins took it and which failed, with the reason."""

    hook: str
    delivered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class PluginWorker:
    """One plugin's worker thread. A daemon, unlike ThreadPoolExecutor's, so that a plugin stuck forever
    cannot keep the desk from shutting down."""

    def __init__(self, plugin: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], dict[str, Any]] | None] = (
            queue.SimpleQueue())
        threading.Thread(target=self._run, name=f"plugin-{plugin}", daemon=True).start()

    def submit(self, function: Callable[..., Any], **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.put((future, function, kwargs))
        return future

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            future, function, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(function(**kwargs))
            except BaseException as exc:  # handed to the dispatcher, which logs and keeps the event
                future.set_exception(exc)

    def stop(self) -> None:
        self._queue.put(None)


class HookDispatcher:
    """Calls event hooks on each plugin's own worker with a time limit; failures go to the log."""

    def __init__(self, pm: pluggy.PluginManager, undelivered: UndeliveredLog, timeout: float,
                 api_factory: Callable[[str], Any]) -> None:
        self.pm = pm
        self.undelivered = undelivered
        self.timeout = timeout
        self._api_for = api_factory
        self._workers: dict[str, PluginWorker] = {}
        self._in_flight: dict[str, Future[Any]] = {}
        self._lock = threading.Lock()

    def _worker(self, plugin: str) -> PluginWorker:
        with self._lock:
            if plugin not in self._workers:
                self._workers[plugin] = PluginWorker(plugin)
            return self._workers[plugin]

    def _impls(self, hook: str, only: str | None = None) -> list[pluggy.HookImpl]:
        caller = getattr(self.pm.hook, hook)
        return [impl for impl in caller.get_hookimpls() if only is None or impl.plugin_name == only]

    def _call(self, impl: pluggy.HookImpl, arguments: Mapping[str, Any]) -> tuple[str | None, Future[Any] | None]:
        """Run one plugin's implementation: (None, future) on success, else (why it failed, its future).

        The future is None when the call was never started because the plugin is stuck in an earlier one.
        """
        plugin = impl.plugin_name
        busy = self._in_flight.get(plugin)
        if busy is not None and not busy.done():
            return f"still busy with an earlier hook call (over {self.timeout:g} s)", None
        available = {**arguments, "api": self._api_for(plugin)}
        kwargs = {name: available[name] for name in impl.argnames}
        future = self._worker(plugin).submit(impl.function, **kwargs)
        self._in_flight[plugin] = future
        try:
            future.result(timeout=self.timeout)
        except FutureTimeout:
            return f"timed out after {self.timeout:g} s", future
        except Exception as exc:  # a plugin may raise anything: that is what isolation is for
            log.debug("plugin %s failed", plugin, exc_info=True)
            return f"{type(exc).__name__}: {exc}", future
        return None, future

    def notify(self, hook: str, **arguments: Any) -> Delivery:
        """Deliver an event to every plugin that implements ``hook``; never raises for a plugin's fault."""
        if hook not in hookspecs.EVENT_HOOKS:
            raise ValueError(f"{hook!r} is not an event hook (expected one of {', '.join(hookspecs.EVENT_HOOKS)})")
        delivery = Delivery(hook)
        payload: dict[str, Any] | None = None
        for impl in reversed(self._impls(hook)):  # pluggy's own call order: last registered first
            error, future = self._call(impl, arguments)
            if error is None:
                delivery.delivered.append(impl.plugin_name)
                continue
            log.error("plugin %s failed on %s: %s (kept for replay)", impl.plugin_name, hook, error)
            delivery.failed[impl.plugin_name] = error
            payload = payload if payload is not None else encode_event(hook, arguments)
            event_id = self.undelivered.record(impl.plugin_name, hook, payload, error)
            self._mark_when_late_success(impl.plugin_name, event_id, future)
        return delivery

    def _mark_when_late_success(self, plugin: str, event_id: int | None, future: Future[Any] | None) -> None:
        """A call that timed out but then finished did deliver: do not replay it."""
        if event_id is None or future is None or future.done():
            return

        def finished(done: Future[Any]) -> None:
            if done.exception() is None:
                try:
                    self.undelivered.mark_delivered(event_id)
                except Exception:
                    log.exception("could not mark late delivery of event %s to %s", event_id, plugin)

        future.add_done_callback(finished)

    def replay(self, plugin: str | None = None) -> Delivery:
        """Hand every undelivered event (of one plugin, or all) to its plugin again."""
        self.undelivered.import_spool()
        result = Delivery("replay")
        for event in self.undelivered.pending(plugin):
            impls = self._impls(event.hook, only=event.plugin)
            if not impls:
                result.failed[f"{event.plugin}#{event.id}"] = "plugin not loaded (not installed or not enabled)"
                continue
            error, _ = self._call(impls[0], decode_event(event.hook, event.payload))
            if error is None:
                self.undelivered.mark_delivered(event.id)
                result.delivered.append(f"{event.plugin}#{event.id}")
            else:
                self.undelivered.mark_failed(event.id, error)
                result.failed[f"{event.plugin}#{event.id}"] = error
        return result

    def close(self, wait: bool = True) -> None:
        """Stop the workers; with ``wait``, let calls in progress finish (up to the time limit each)."""
        with self._lock:
            workers, self._workers = self._workers, {}
        for plugin, worker in workers.items():
            future = self._in_flight.get(plugin)
            if wait and future is not None and not future.done():
                try:
                    future.result(timeout=self.timeout)
                except Exception:
                    pass
            worker.stop()


class EventBus:
    """Fire-and-forget publishing for the call path: ``publish`` returns at once, a thread delivers.

    The telephony and speech layers publish through this so that no plugin, however slow, can delay a
    call. ``drain`` waits until everything published so far has been handled (used at shutdown and in tests).
    """

    def __init__(self, dispatcher: HookDispatcher) -> None:
        self.dispatcher = dispatcher
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="event-bus", daemon=True)
        self._thread.start()

    def publish(self, hook: str, **arguments: Any) -> None:
        if hook not in hookspecs.EVENT_HOOKS:
            raise ValueError(f"{hook!r} is not an event hook")
        self._queue.put((hook, arguments))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            hook, arguments = item
            try:
                self.dispatcher.notify(hook, **arguments)
            except Exception:
                log.exception("event %s could not be dispatched", hook)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def drain(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
