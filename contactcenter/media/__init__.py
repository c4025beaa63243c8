"""One call's media: both legs pushed from the RTP threads into a CallMedia, fanned out to the recorder,
the speech and the headset."""
