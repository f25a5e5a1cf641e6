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


def write_sb3_model(path: Path, marker: Path) -> Path:
    """An SB3 ``model.zip`` whose ``data`` member holds a cloudpickled ``Payload``: SB3's loader
    unpickles it, so loading this zip runs the command."""
    import base64
    import json
    import zipfile

    import cloudpickle

    serialized = base64.b64encode(cloudpickle.dumps(Payload(marker))).decode()
    data = {"policy_class": {":type:": "<class 'abc.ABCMeta'>", ":serialized:": serialized}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data", json.dumps(data))
    return path
