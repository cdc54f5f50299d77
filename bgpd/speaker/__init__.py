"""The speaker: session events, plans and `now` in; bytes per update group, FIB changes and
deadlines out (`speaker.Speaker`, pure). `inbound` is the queue of route work, `pacing` how
long a slice of it runs and how far apart write-outs go, `restart` graceful restart's state
and deadlines, `actions` what the speaker asks of its shell, and `driver` that shell: the
asyncio loop around a Speaker, the session drivers and the kernel."""
