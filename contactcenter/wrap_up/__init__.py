"""The agent's wrap-up (话后处理): what the call was about, saved to the call, customer, ticket and callbacks.

- :mod:`contactcenter.wrap_up.form`: :class:`WrapUpForm` (what the agent typed), :func:`check_form` (the
  checks, messages in Chinese per field: :class:`WrapUpError`) and :func:`wrap_up_defaults` (the form
  prefilled from the customer record and the call);
- :mod:`contactcenter.wrap_up.save`: :func:`save_wrap_up`, one transaction for the call, the customer and the
  callbacks, then the ``call_wrapped_up`` event (the ticket plugin fills the call's ticket from it).

A layer beside ``scheduling`` and ``qa``: it uses hooks' records, callbacks, storage and settings, and is
used by the agent's desktop and the commands.
"""

from contactcenter.wrap_up.form import WrapUpError, WrapUpForm, WrapUpNotSaved, check_form, wrap_up_defaults
from contactcenter.wrap_up.save import save_wrap_up

__all__ = ["WrapUpError", "WrapUpForm", "WrapUpNotSaved", "check_form", "save_wrap_up", "wrap_up_defaults"]
