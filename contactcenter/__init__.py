"""contactcenter: a SIP phone line turned into a disciplined Chinese-language customer-service desk."""

from contactcenter.hooks.spec import (
    hookimpl,  # the marker plugins import: `from contactcenter import hookimpl`
)

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
