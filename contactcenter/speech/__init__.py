"""Speech: the Vosk model on disk, recognition of call legs, and the service-script rules."""
