"""Helpers shared by the test modules, conftest.py and bench/: plain functions and classes, no fixtures.

The fixtures built on them are in the repository's conftest.py. No test module imports another test module:
what two of them share lives here.

    paths      the checkout, ../shared beside it, and its speech clips
    ports      free loopback ports; whether a process has bound one (UDP) or accepts connections on it (TCP)
    waiting    wait_until: poll a condition instead of sleeping a fixed time
    settings   a deployable desk folder and settings loaded for a test database
    postgres   a throwaway PostgreSQL server for the session
    factories  records as the telephony and speech layers hand them to plugins; installing test plugins
    signals    test tones and their analysis (frequency, level, correlation)
    sound      a PulseAudio server with null sinks standing in for the agent's headset
    sip        SIPp callers and callees, and extension 1001's softphone, against Kamailio on loopback
    web        the reviewer console's seeded store, signed-in clients, and `contactcenter` processes
    memory     the process's resident memory, as the benchmarks report it
"""
