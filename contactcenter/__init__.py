"""contactcenter: a SIP phone line turned into a disciplined Chinese-language customer-service desk."""

__version__ = "0.1.0"

from contactcenter.hookspecs import hookimpl  # noqa: E402  (the marker plugins import)

__all__ = ["__version__", "hookimpl"]
