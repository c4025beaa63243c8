"""Call audio handed to recognition on a thread of its own, not on the RTP threads.

The RTP sender and receiver (telephony/rtp_loop.py) run at real-time priority and must be back at their
sockets for the next packet. Handing a frame to a leg's speech stream costs more than the packet itself:
the silence gate, the leg's lock (which a feeder thread of normal priority may hold: the real-time thread
then waits for it), now and then a batch for a worker or a turn for the listener. So the RTP threads only
append the frame here (a deque: no lock, no wake-up), and this thread, at the desk's normal priority, pushes
what has gathered every ``PERIOD_SECONDS``, in order. Recognition is hundreds of milliseconds behind the
audio anyway; 20 ms more is not seen.

At the end of a call, ``drain`` waits until everything handed in before it has been pushed, so the speech's
last frames are in before it is finished.

What waits here is not bounded: dropping a frame here would shift the leg's timeline, and a push never
waits long (``LegStream.push`` without ``block`` only takes the leg's lock, and drops from recognition
itself, counted, when recognition is behind), so the queue stays within one period's frames.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

from contactcenter.audio.line import FRAME_SECONDS, Leg

log = logging.getLogger(__name__)

PERIOD_SECONDS = FRAME_SECONDS  # what gathered is pushed this often
DRAIN_TIMEOUT_SECONDS = 10.0

Push = Callable[[Leg, bytes], None]


class SpeechIntake:
    """One thread that pushes the frames the RTP threads hand in, in the order they came."""

    def __init__(self, period_s: float = PERIOD_SECONDS) -> None:
        self.period_s = period_s
        self._items: collections.deque[tuple[Push, Leg, bytes] | threading.Event] = collections.deque()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def put(self, push: Push, leg: Leg, frame: bytes) -> None:
        """From an RTP thread: ``push(leg, frame)`` will be called soon, after what was put before it."""
        if self._thread is None:
            self._start()
        self._items.append((push, leg, frame))

    def drain(self, timeout: float = DRAIN_TIMEOUT_SECONDS) -> bool:
        """Wait until everything put before this call has been pushed; False if that took over ``timeout``."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._items.append(done)
        return done.wait(timeout)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="speech intake", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        items = self._items
        while True:
            time.sleep(self.period_s)
            while items:
                item = items.popleft()
                if isinstance(item, threading.Event):
                    item.set()
                    continue
                push, leg, frame = item
                try:
                    push(leg, frame)
                except Exception:  # the pushes given here catch their own; this thread must not end
                    log.exception("handing call audio to recognition failed; the call goes on")


#: The one intake of this process (its thread starts with the first frame).
SPEECH_INTAKE = SpeechIntake()
