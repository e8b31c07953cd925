"""Engine.IO v4: a sans-IO core (packets, session state machine) and a Trio server adapter.

The core never touches sockets or clocks so it can be tested with plain values;
only :mod:`protocol.engineio.server` does I/O.
"""
