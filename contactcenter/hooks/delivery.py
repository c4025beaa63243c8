"""Isolated delivery of event hooks: a queue and a worker per plugin, a time limit, and a record of every
failure.

pluggy calls every implementation of a hook in turn on the caller's thread, so one plugin that raises
stops the rest and one that hangs stops the caller. For event hooks the desk instead delivers to each
plugin itself (honouring pluggy's argument-subset convention):

- publishing an event fans it out at once into one ordered queue per plugin that implements the hook;
- each plugin's queue is drained by that plugin's own delivery thread, which hands the call to the plugin's
  own runner thread and waits at most ``hook_timeout_seconds`` for it. A slow plugin therefore delays only
  its own later events, never another plugin's, and each plugin sees events in the order they were
  published;
- a call that raises or overruns is logged with the plugin's name and kept by :class:`UndeliveredLog` for
  replay; if it overran but then finishes without error, the kept event is marked delivered after all;
- while a plugin is still stuck in an earlier call, its next events are not queued up behind it: each goes
  straight to the undelivered log.

``drain()`` waits until every event published so far (and every event those deliveries published in turn)
has been handled by every plugin.
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
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pluggy
from pydantic import TypeAdapter

from contactcenter.hooks import spec
from contactcenter.storage.undelivered import UndeliveredLog

log = logging.getLogger(__name__)

INJECTED_ARGUMENTS = ("api",)


@cache
def _argument_adapters(hook: str) -> dict[str, TypeAdapter[Any]]:
    """JSON (de)serialisers for a hook's arguments, from the hookspec's annotations."""
    hookspec = getattr(spec, hook)
    hints = typing.get_type_hints(hookspec, localns={"PluginAPI": object})
    return {
        name: TypeAdapter(hints[name])
        for name in inspect.signature(hookspec).parameters
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


def check_event_hook(hook: str) -> None:
    if hook not in spec.EVENT_HOOKS:
        raise ValueError(f"{hook!r} is not an event hook (expected one of {', '.join(spec.EVENT_HOOKS)})")


@dataclass
class Delivery:
    """What happened to one event: which plugins took it and which failed, with the reason."""

    hook: str
    delivered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass
class _Job:
    """One hook call waiting in a plugin's queue; ``result`` gets None (delivered) or the reason it failed."""

    impl: pluggy.HookImpl
    hook: str
    arguments: Mapping[str, Any]
    replay_of: int | None = None  # the undelivered event this call hands over again
    result: Future[str | None] = field(default_factory=Future)


class _Runner:
    """The thread a plugin's code runs on. A daemon, unlike ThreadPoolExecutor's, so that a plugin stuck
    forever cannot keep the desk from shutting down."""

    def __init__(self, plugin: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], dict[str, Any]] | None] = (
            queue.SimpleQueue()
        )
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
            except BaseException as exc:  # handed to the delivery thread, which logs and keeps the event
                future.set_exception(exc)

    def stop(self) -> None:
        self._queue.put(None)


class PluginWorker:
    """One plugin's delivery: its ordered queue of hook calls, drained by its own thread, which runs each
    on the plugin's runner thread with the time limit and records what failed."""

    def __init__(self, plugin: str, dispatcher: HookDispatcher) -> None:
        self.plugin = plugin
        self._dispatcher = dispatcher
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._runner = _Runner(plugin)
        self._in_flight: Future[Any] | None = None
        self._thread = threading.Thread(target=self._drain, name=f"deliver-{plugin}", daemon=True)
        self._thread.start()

    def put(self, job: _Job) -> None:
        self._jobs.put(job)

    def _drain(self) -> None:
        while (job := self._jobs.get()) is not None:
            error: str | None = "not delivered: the delivery thread failed"
            try:
                error = self._deliver(job)
            except Exception:  # the undelivered log itself failed; the worker must go on
                log.exception("delivering %s to plugin %s failed", job.hook, self.plugin)
            finally:
                job.result.set_result(error)
                self._dispatcher._job_done()

    def _deliver(self, job: _Job) -> str | None:
        undelivered = self._dispatcher.undelivered
        error, future = self._call(job.impl, job.arguments)
        if job.replay_of is not None:
            if error is None:
                undelivered.mark_delivered(job.replay_of)
            else:
                undelivered.mark_failed(job.replay_of, error)
            return error
        if error is not None:
            log.error("plugin %s failed on %s: %s (kept for replay)", self.plugin, job.hook, error)
            event_id = undelivered.record(self.plugin, job.hook, encode_event(job.hook, job.arguments), error)
            self._mark_when_late_success(event_id, future)
        return error

    def _call(self, impl: pluggy.HookImpl, arguments: Mapping[str, Any]) -> tuple[str | None, Future[Any] | None]:
        """Run one call of the plugin's implementation: (None, future) on success, else (why it failed, its
        future). The future is None when the call was never started because the plugin is stuck in an
        earlier one."""
        timeout = self._dispatcher.timeout
        busy = self._in_flight
        if busy is not None and not busy.done():
            return f"still busy with an earlier hook call (over {timeout:g} s)", None
        available = {**arguments, "api": self._dispatcher.api_for(self.plugin)}
        kwargs = {name: available[name] for name in impl.argnames}
        future = self._in_flight = self._runner.submit(impl.function, **kwargs)
        try:
            future.result(timeout=timeout)
        except FutureTimeout:
            return f"timed out after {timeout:g} s", future
        except Exception as exc:  # a plugin may raise anything: that is what isolation is for
            log.debug("plugin %s failed", self.plugin, exc_info=True)
            return f"{type(exc).__name__}: {exc}", future
        return None, future

    def _mark_when_late_success(self, event_id: int | None, future: Future[Any] | None) -> None:
        """A call that timed out but then finished did deliver: do not replay it."""
        if event_id is None or future is None or future.done():
            return
        undelivered, plugin = self._dispatcher.undelivered, self.plugin

        def finished(done: Future[Any]) -> None:
            if done.exception() is None:
                try:
                    undelivered.mark_delivered(event_id)
                except Exception:
                    log.exception("could not mark late delivery of event %s to %s", event_id, plugin)

        future.add_done_callback(finished)

    def stop(self, wait: bool) -> None:
        """Deliver what is queued (with ``wait``), let a call in progress finish (up to the time limit), and
        end both threads."""
        self._jobs.put(None)
        if wait:
            self._thread.join()
            busy = self._in_flight
            if busy is not None and not busy.done():
                wait_futures([busy], timeout=self._dispatcher.timeout)  # its outcome is already handled
        self._runner.stop()


class HookDispatcher:
    """Fans event hooks out to each plugin's own worker; failures go to the undelivered log."""

    def __init__(
        self, pm: pluggy.PluginManager, undelivered: UndeliveredLog, timeout: float, api_factory: Callable[[str], Any]
    ) -> None:
        self.pm = pm
        self.undelivered = undelivered
        self.timeout = timeout
        self.api_for = api_factory
        self._workers: dict[str, PluginWorker] = {}
        self._lock = threading.Lock()  # one fan-out at a time: every plugin sees the same order
        self._pending = 0  # jobs queued and not yet handled, for drain()
        self._idle = threading.Condition()
        self._closed = False

    def _impls(self, hook: str, only: str | None = None) -> list[pluggy.HookImpl]:
        caller = getattr(self.pm.hook, hook)
        impls = [impl for impl in caller.get_hookimpls() if only is None or impl.plugin_name == only]
        return list(reversed(impls))  # pluggy's own call order: last registered first

    def _submit(self, jobs: list[_Job]) -> list[_Job]:
        """Put each job in its plugin's queue (all or none); a closed dispatcher takes none."""
        with self._lock:
            if self._closed:
                return []
            with self._idle:
                self._pending += len(jobs)
            for job in jobs:
                worker = self._workers.get(job.impl.plugin_name)
                if worker is None:
                    worker = self._workers[job.impl.plugin_name] = PluginWorker(job.impl.plugin_name, self)
                worker.put(job)
        return jobs

    def _job_done(self) -> None:
        with self._idle:
            self._pending -= 1
            if self._pending == 0:
                self._idle.notify_all()

    def enqueue(self, hook: str, arguments: Mapping[str, Any]) -> list[_Job]:
        """Queue an event for every plugin that implements ``hook`` and return at once."""
        check_event_hook(hook)
        jobs = [_Job(impl, hook, arguments) for impl in self._impls(hook)]
        if jobs and not self._submit(jobs):
            self._keep_unqueued(jobs, "published after the plugin host closed")
        return jobs

    def _keep_unqueued(self, jobs: list[_Job], reason: str) -> None:
        for job in jobs:
            log.warning("plugin %s misses %s: %s (kept for replay)", job.impl.plugin_name, job.hook, reason)
            try:
                self.undelivered.record(job.impl.plugin_name, job.hook, encode_event(job.hook, job.arguments), reason)
            except Exception:
                log.exception("could not keep %s for plugin %s", job.hook, job.impl.plugin_name)
            job.result.set_result(reason)

    def notify(self, hook: str, **arguments: Any) -> Delivery:
        """Deliver an event to every plugin that implements ``hook`` and wait until each has taken it (or
        failed); never raises for a plugin's fault. Plugins are called in parallel, each in its order."""
        delivery = Delivery(hook)
        for job in self.enqueue(hook, arguments):
            error = job.result.result()
            if error is None:
                delivery.delivered.append(job.impl.plugin_name)
            else:
                delivery.failed[job.impl.plugin_name] = error
        return delivery

    def replay(self, plugin: str | None = None) -> Delivery:
        """Hand every undelivered event (of one plugin, or all) to its plugin again, through the plugin's
        queue, and wait for the outcome."""
        self.undelivered.import_spool()
        result = Delivery("replay")
        handed: list[tuple[str, _Job]] = []
        for event in self.undelivered.pending(plugin):
            label = f"{event.plugin}#{event.id}"
            impls = self._impls(event.hook, only=event.plugin)
            if not impls:
                result.failed[label] = "plugin not loaded (not installed or not enabled)"
                continue
            job = _Job(impls[0], event.hook, decode_event(event.hook, event.payload), replay_of=event.id)
            if not self._submit([job]):
                result.failed[label] = "the plugin host is closed"
                continue
            handed.append((label, job))
        for label, job in handed:
            error = job.result.result()
            if error is None:
                result.delivered.append(label)
            else:
                result.failed[label] = error
        return result

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every job queued so far, and every one queued meanwhile, has been handled."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, wait: bool = True) -> None:
        """Stop taking events and stop the workers; with ``wait``, deliver what is queued first and let calls
        in progress finish (up to the time limit each)."""
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, {}
        for worker in workers.values():
            worker.stop(wait)


class EventBus:
    """Fire-and-forget publishing for the call path: ``publish`` returns at once, each plugin's worker
    delivers.

    The telephony and speech layers publish through this so that no plugin, however slow, can delay a
    call. ``drain`` waits until everything published so far has been handled by every plugin (used at
    shutdown and in tests).
    """

    def __init__(self, dispatcher: HookDispatcher) -> None:
        self.dispatcher = dispatcher

    def publish(self, hook: str, **arguments: Any) -> None:
        self.dispatcher.enqueue(hook, arguments)

    def drain(self, timeout: float | None = None) -> bool:
        return self.dispatcher.drain(timeout)

    def close(self) -> None:
        """Deliver what is queued and stop; later events are kept as undelivered, for replay."""
        self.dispatcher.close()
