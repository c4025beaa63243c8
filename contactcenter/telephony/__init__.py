"""Telephony: the SIP side of the desk (registrar on loopback now; the pyVoIP softphone next)."""
