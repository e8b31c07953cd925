"""Engine.IO v4 + Socket.IO v5, written for ephysd.

The packet and session logic is sans-IO (bytes and ``now`` in, events out) so it
can be tested with plain strings and fuzzed; the Trio adapters are the only
modules that touch sockets or clocks.
"""
