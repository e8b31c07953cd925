"""The two conformance servers the official Engine.IO / Socket.IO test suites drive.

``python -m protocol.conformance engineio|socketio --port N``; see
``../shared/reference/socketio-conformance.md`` for what each must do.
"""
