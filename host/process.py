"""Background processes the host starts (the controller daemon, the co-simulation server)."""

import contextlib
import os
from pathlib import Path

__all__ = ["alive"]


def alive(pid: int) -> bool:
    """Is process `pid` running? Our own exited child is reaped, and a zombie counts as dead
    (it still takes signals)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    return True
