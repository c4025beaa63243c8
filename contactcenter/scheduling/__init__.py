"""Callbacks: working days, the callback book, the scheduler (APScheduler) and its lease."""
