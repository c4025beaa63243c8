"""Callbacks (次日回访, complaint follow-ups): the book of promised calls and the working-day calendar."""
