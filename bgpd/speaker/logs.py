"""One log line per event: the speaker's `Log` actions that only add to the line before them
are folded into it. A session that ends with graceful restart is one "session down" line
with the stale routes kept, not a second line for them.

Pure: actions in, actions out, in order; everything but the folded `Log`s passes as it is.
"""

from __future__ import annotations

from bgpd.speaker.actions import Action, Log

FOLLOW_UPS = {"keeping stale routes for restart": "session down"}
"""A follow-up event -> the event whose line it joins (for the same peer)."""


def merge_follow_ups(actions: list[Action]) -> list[Action]:
    """`actions` with each follow-up `Log` merged into the last `Log` before it, when that
    one is the event it follows for the same peer. The follow-up's fields join that line's,
    whose own fields win where both have one; the merged line keeps the first's place."""
    if not any(isinstance(a, Log) and a.event in FOLLOW_UPS for a in actions):
        return actions
    out: list[Action] = []
    last_log: int | None = None
    for action in actions:
        if isinstance(action, Log):
            target = FOLLOW_UPS.get(action.event)
            if target is not None and last_log is not None:
                first = out[last_log]
                assert isinstance(first, Log)
                if first.event == target and first.fields.get("peer") == action.fields.get(
                    "peer"
                ):
                    extra = {k: v for k, v in action.fields.items() if k not in first.fields}
                    out[last_log] = Log(
                        first.level, first.event, {**first.fields, **extra}, first.traceback
                    )
                    continue
            last_log = len(out)
        out.append(action)
    return out
