"""Tests of the Engine.IO v4 layer: codec, state machine, and the Trio server over real sockets."""
