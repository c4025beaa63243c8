"""Demo material: the SIPp caller scenario and its recorded voice (speech, a tone, DTMF 1 2 #)."""
