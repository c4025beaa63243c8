"""contactcenter: a SIP phone line turned into a disciplined Chinese-language customer-service desk."""

__version__ = "0.1.0"
