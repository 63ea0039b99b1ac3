"""Where streamtag keeps a user's files, per system (through ``platformdirs``).

==========  ==========================================  ==========================================
system      data (reference library)                    config (``streamtag.yaml``)
==========  ==========================================  ==========================================
Linux       ``$XDG_DATA_HOME/streamtag``                ``$XDG_CONFIG_HOME/streamtag``
            (``~/.local/share/streamtag``)              (``~/.config/streamtag``)
macOS       ``~/Library/Application Support/streamtag``  the same folder
Windows     ``%LOCALAPPDATA%\\streamtag``                 the same folder
==========  ==========================================  ==========================================
"""

from __future__ import annotations

from pathlib import Path

import platformdirs

APP = "streamtag"
CONFIG_NAME = "streamtag.yaml"
LIBRARY_NAME = "references.safetensors"


def data_dir() -> Path:
    """The user's streamtag data folder (not created here)."""
    return platformdirs.user_data_path(APP, appauthor=False)


def config_dir() -> Path:
    """The user's streamtag config folder (not created here)."""
    return platformdirs.user_config_path(APP, appauthor=False)


def default_config_path() -> Path:
    """``streamtag.yaml`` in ``config_dir()``: the config ``streamtag service install`` uses
    when it exists and no ``--config`` is given."""
    return config_dir() / CONFIG_NAME


def default_library_path() -> Path:
    """``references.safetensors`` in ``data_dir()``: where ``streamtag reference`` reads and
    writes when no ``--library`` is given."""
    return data_dir() / LIBRARY_NAME
