"""A Dask scheduler on the login node that lives as long as the SSH channel
that started it. Its source is sent with ``python -c``, so it needs nothing on
the login node but Python and distributed, which the workers need anyway.

Protocol: one JSON line on stdin, ``{"options": <Scheduler kwargs>,
"security": <Security kwargs with PEM contents> or null}``; one JSON line on
stdout once the scheduler listens, ``{"address", "dashboard_port", "pid"}``.
The scheduler closes when stdin does: the client closed it, or the
connection (and with it the client) is gone.
"""

import asyncio
import json
import os
import sys
import threading


async def serve(spec):
    from distributed import Scheduler
    from distributed.security import Security

    security = Security(**spec["security"]) if spec.get("security") else None
    loop = asyncio.get_running_loop()
    stdin_closed = asyncio.Event()

    def wait_for_eof():
        sys.stdin.read()
        loop.call_soon_threadsafe(stdin_closed.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    async with Scheduler(security=security, **spec["options"]) as scheduler:
        dashboard = scheduler.services.get("dashboard")
        print(json.dumps({
            "address": scheduler.address,
            "dashboard_port": dashboard.port if dashboard else None,
            "pid": os.getpid(),
        }), flush=True)
        ended = [asyncio.ensure_future(stdin_closed.wait()), asyncio.ensure_future(scheduler.finished())]
        await asyncio.wait(ended, return_when=asyncio.FIRST_COMPLETED)


if __name__ == "__main__":
    asyncio.run(serve(json.loads(sys.stdin.readline())))
