"""Socket.IO v5 on top of Engine.IO sessions: the packet codec and the ack bookkeeping.

Both are sans-IO-ish building blocks shared by :mod:`protocol.server` and
:mod:`protocol.client`, which are the only modules here that do I/O.
"""
