"""The asyncio client: ``pantheon_client.aio.Pantheon`` has the synchronous client's
methods, awaited (``await Pantheon.connect(...)``, ``async for event in sub``,
``await event.ack()``)."""

from ..events import AsyncEvent as Event
from .client import Pantheon
from .subscribe import Subscription
from .watch import Watch

__all__ = ["Event", "Pantheon", "Subscription", "Watch"]
