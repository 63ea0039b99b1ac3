"""streamtag: real-time audio analysis for performers (emotion, instrument, timbre)."""

__version__ = "0.1.0"
