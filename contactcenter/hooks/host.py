"""Plugin discovery, enabling and loading (entry-point group ``contactcenter``), with error isolation, and
the one list of the desk's built-in plugins.

First-party plugins (plugins/tickets, ...) are separate distributions found through the same entry-point
group a third party uses; the core never imports them. A plugin that fails to import is logged with its
name and reported by ``contactcenter plugins list``; the rest load and run. The built-in plugins
(:data:`BUILT_IN_PLUGINS`) are registered by every desk process and are always on; they are named by
import path and imported only when loaded, so this package never imports the layers above it.
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

import click
import pluggy
from pydantic import BaseModel, ValidationError

from contactcenter.hooks import spec
from contactcenter.hooks.api import Dialer, PluginAPI
from contactcenter.hooks.delivery import EventBus, HookDispatcher
from contactcenter.settings import Settings, SettingsError
from contactcenter.storage.database import Database
from contactcenter.storage.undelivered import UndeliveredLog

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "contactcenter"

#: The desk's own plugins, registered by every desk process and always on (like pytest's built-in plugins):
#: name → module. They get the same isolation, time limit and replay as an installed plugin.
BUILT_IN_PLUGINS: dict[str, str] = {
    "callbacks": "contactcenter.scheduling.after_calls",  # calls and tickets → callbacks, by [callbacks]
    "live_view": "contactcenter.web.live_feed",  # calls in progress → the supervisors' live view
}


def built_in_module(name: str) -> ModuleType:
    """Import a built-in plugin's module."""
    return importlib.import_module(BUILT_IN_PLUGINS[name])


@dataclass
class PluginInfo:
    """One plugin as ``contactcenter plugins list`` shows it."""

    name: str
    distribution: str | None
    version: str | None
    enabled: bool
    status: str  # loaded | disabled | import failed | not installed (describe_plugins: enabled | built in)
    error: str | None = None
    hooks: list[str] = field(default_factory=list)


def installed_entry_points() -> dict[str, EntryPoint]:
    """Installed plugins by entry-point name (the first one wins if two distributions use one name)."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            log.warning("two plugins are named %r; using the one from %s", ep.name, _dist_name(found[ep.name]))
            continue
        found[ep.name] = ep
    return found


def _dist_name(ep: EntryPoint) -> str | None:
    return ep.dist.metadata["Name"] if ep.dist is not None else None


class PluginHost:
    """The plugin manager of one process: loads enabled plugins and delivers events to them."""

    def __init__(self, settings: Settings, database: Database | None) -> None:
        self.settings = settings
        self.database = database
        self.pm = pluggy.PluginManager(spec.PROJECT_NAME)
        self.pm.add_hookspecs(spec)
        self.import_errors: dict[str, str] = {}
        self._options: dict[str, Any] = {}
        self._apis: dict[str, PluginAPI] = {}
        self.undelivered = UndeliveredLog(database, settings.general.data_dir / "spool")
        self.dispatcher = HookDispatcher(self.pm, self.undelivered, settings.plugins.hook_timeout_seconds, self.api_for)
        self.bus = EventBus(self.dispatcher)
        self.stopping = threading.Event()
        self.dialer: Dialer | None = None  # the phone, in a process that runs one (`run`): api.dial

    def attach_phone(self, dialer: Dialer | None) -> None:
        """Let plugins place calls through this process's phone (``api.dial``); None takes it away."""
        self.dialer = dialer

    def publish(self, hook: str, **arguments: Any) -> None:
        """Publish an event to every plugin (returns at once; see :class:`EventBus`)."""
        self.bus.publish(hook, **arguments)

    @property
    def enabled_names(self) -> list[str]:
        return list(self.settings.plugins.enabled)

    def load_entry_points(self) -> None:
        """Import and register every enabled, installed plugin; import failures are kept, not raised."""
        available = installed_entry_points()
        for name in self.enabled_names:
            ep = available.get(name)
            if ep is None:
                log.warning("plugin %r is enabled in settings but not installed", name)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # an import can fail in any way; the desk must still start
                self.import_errors[name] = f"{type(exc).__name__}: {exc}"
                log.error("plugin %s failed to import and is not running: %s", name, self.import_errors[name])
                continue
            self.register(plugin, name)

    def load_built_ins(self) -> None:
        """Register the built-in plugins (always on, whatever ``[plugins] enabled`` says)."""
        for name in BUILT_IN_PLUGINS:
            self.register(built_in_module(name), name)

    def register(self, plugin: object, name: str) -> None:
        """Register a plugin object under ``name`` and validate its ``[plugins.<name>]`` settings."""
        self.pm.register(plugin, name=name)
        self._options[name] = self._validate_options(plugin, name)

    def _validate_options(self, plugin: object, name: str) -> Any:
        raw = self.settings.plugins.options.get(name, {})
        declare = getattr(plugin, "register_settings", None)
        model = declare() if callable(declare) else None
        if model is None:
            return raw
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise SettingsError([f"plugin {name}: register_settings must return a pydantic model class"])
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            self.pm.unregister(name=name)
            raise SettingsError(
                [
                    f"{self.settings.source}: [plugins.{name}] {'.'.join(map(str, e['loc']))}: "
                    + ("unknown key" if e["type"] == "extra_forbidden" else str(e["msg"]))
                    for e in exc.errors()
                ]
            ) from None

    def options(self, name: str) -> Any:
        """The plugin's validated settings (its model instance), or the raw table if it declared none."""
        return self._options.get(name, {})

    def api_for(self, name: str) -> PluginAPI:
        if name not in self._apis:
            self._apis[name] = PluginAPI(name, self)
        return self._apis[name]

    def hooks_of(self, name: str) -> list[str]:
        plugin = self.pm.get_plugin(name)
        if plugin is None:
            return []
        return sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])

    def add_commands(self, cli: click.Group) -> None:
        """Let enabled plugins add CLI commands; a plugin that fails here is logged, not fatal."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as exc:
                log.error("plugin %s failed to register commands: %s", impl.plugin_name, exc)

    def forget_customer(self, phone: str, key: str) -> list[tuple[str, str | None, str | None]]:
        """Pass an erasure request to every plugin that implements ``forget_customer``: (plugin, what it
        said it did, the error if it failed) for each. One plugin failing does not stop the others."""
        results: list[tuple[str, str | None, str | None]] = []
        for impl in self.pm.hook.forget_customer.get_hookimpls():
            name = impl.plugin_name
            arguments = {"phone": phone, "phone_key": key, "api": self.api_for(name)}
            try:
                said = impl.function(**{arg: arguments[arg] for arg in impl.argnames})
            except Exception as exc:
                log.error("plugin %s failed to forget a customer: %s", name, exc)
                results.append((name, None, f"{type(exc).__name__}: {exc}"))
            else:
                results.append((name, str(said) if said else None, None))
        return results

    def infos(self) -> list[PluginInfo]:
        """Every installed plugin and every enabled one, with version, hooks and state."""
        available = installed_entry_points()
        enabled = set(self.enabled_names)
        infos = []
        registered = {name for name, _ in self.pm.list_name_plugin()}
        for name in sorted(set(available) | enabled | registered):
            ep = available.get(name)
            dist = ep.dist if ep is not None else None
            if name in self.import_errors:
                status = "import failed"
            elif self.pm.get_plugin(name) is not None:
                status = "loaded"
            elif ep is None:
                status = "not installed"
            else:
                status = "disabled"
            infos.append(
                PluginInfo(
                    name=name,
                    distribution=dist.metadata["Name"] if dist is not None else None,
                    version=dist.version if dist is not None else None,
                    enabled=name in enabled or (ep is None and name in registered),  # built in: always on
                    status=status,
                    error=self.import_errors.get(name),
                    hooks=self.hooks_of(name) or _declared_hooks(ep),
                )
            )
        return infos

    def close(self) -> None:
        """Deliver what is queued, then stop the workers; ``api.stopping`` tells plugins' own threads."""
        self.bus.drain()
        self.bus.close()
        self.dispatcher.close()
        self.stopping.set()


def describe_plugins(settings: Settings) -> list[PluginInfo]:
    """Every built-in, installed and enabled plugin, as a process that does not run them sees them (the
    console): status "built in", "enabled", "disabled", "not installed" or "import failed"."""
    available = installed_entry_points()
    enabled = set(settings.plugins.enabled)
    infos = [
        PluginInfo(
            name=name,
            distribution=None,
            version=None,
            enabled=True,
            status="built in",
            hooks=_module_hooks(built_in_module(name)),
        )
        for name in BUILT_IN_PLUGINS
    ]
    for name in sorted(set(available) | enabled):
        ep = available.get(name)
        dist = ep.dist if ep is not None else None
        status, error, hooks = "not installed", None, []
        if ep is not None:
            status = "enabled" if name in enabled else "disabled"
            try:
                hooks = _module_hooks(ep.load())
            except Exception as exc:  # any import error; the console only reports it
                status, error = "import failed", f"{type(exc).__name__}: {exc}"
        infos.append(
            PluginInfo(
                name=name,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
                enabled=name in enabled,
                status=status,
                error=error,
                hooks=hooks,
            )
        )
    return infos


def _declared_hooks(ep: EntryPoint | None) -> list[str]:
    """Hooks a plugin that is not loaded would implement (imports its module; best effort)."""
    if ep is None:
        return []
    try:
        module = ep.load()
    except Exception:
        return []
    return _module_hooks(module)


def _module_hooks(module: object) -> list[str]:
    names = {*spec.EVENT_HOOKS, "register_commands", "register_settings"}
    return sorted(name for name in names if callable(getattr(module, name, None)))
