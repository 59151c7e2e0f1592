"""The Thespian actor, in a module of its own so the actor process can import it by name."""

from __future__ import annotations

import os
from typing import Any

from thespian.actors import Actor


class Echo(Actor):
    """Echo calls; count one-way payloads (bytes) and tell the count when asked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.casts = 0

    def receiveMessage(self, message: Any, sender: Any) -> None:  # Thespian's name for it
        if isinstance(message, bytes):
            self.casts += 1
        elif message == "count":
            self.send(sender, self.casts)
        elif message == "pid":
            self.send(sender, os.getpid())
        elif isinstance(message, int):
            self.send(sender, message)
