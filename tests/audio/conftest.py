"""Fixtures for the audio tests: ``jack_server`` starts a private dummy JACK server."""

from .jack_harness import jack_server as jack_server
