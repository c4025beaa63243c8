"""The plugin contract, in four parts that import only downward, in this order:

- :mod:`contactcenter.hooks.spec`: every hook (``hookspec``), the ``hookimpl`` marker and ``EVENT_HOOKS``;
- :mod:`contactcenter.hooks.api`: ``PluginAPI``, the typed operations a plugin calls back with, and the
  ``Line`` / ``DialOutcome`` / ``OutboxItem`` types it hands out;
- :mod:`contactcenter.hooks.delivery`: the per-plugin delivery workers, the event bus, the undelivered log
  and replay;
- :mod:`contactcenter.hooks.host`: ``PluginHost`` (entry points, the enabled list, options, the one list of
  built-in plugins) tying the three together for one process.

Below them: records, settings, storage, callbacks, audio. Nothing here imports telephony, speech,
scheduling, web or the commands; the built-in plugins are named by import path and loaded on demand.
"""

from contactcenter.hooks.spec import EVENT_HOOKS, hookimpl, hookspec

__all__ = ["EVENT_HOOKS", "hookimpl", "hookspec"]
