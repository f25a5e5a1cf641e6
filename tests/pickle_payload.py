"""A pickle that runs code when loaded: what the safe-loading tests and scripts/fault_check.py feed to
``torch.load`` to show it is refused."""

from __future__ import annotations

import os
import shlex
from pathlib import Path


class Payload:
    """Unpickling it runs a shell command that writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)
