"""Audio: codecs, silence detection, and (later) the agent's headset bridge."""
