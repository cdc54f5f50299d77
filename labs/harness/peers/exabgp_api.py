"""ExaBGP API process used by `ExabgpPeer` (ExaBGP runs it as a child; not a test module).

    exabgp_api.py COMMAND_FIFO EVENTS_FILE

Lines written to COMMAND_FIFO ("announce route ...") go to ExaBGP on stdout; every line ExaBGP
sends on stdin (JSON state and update messages) is appended to EVENTS_FILE as it arrives.
"""

from __future__ import annotations

import sys
import threading


def forward_commands(fifo: str) -> None:
    while True:
        # open() blocks until a writer comes; EOF when it closes; then wait for the next one.
        with open(fifo) as commands:
            for line in commands:
                sys.stdout.write(line)
                sys.stdout.flush()


def main() -> None:
    fifo, events = sys.argv[1], sys.argv[2]
    threading.Thread(target=forward_commands, args=(fifo,), daemon=True).start()
    with open(events, "a") as out:
        for line in sys.stdin:
            out.write(line)
            out.flush()


if __name__ == "__main__":
    main()
