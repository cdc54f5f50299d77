"""The kernel side: what the FIB should hold (`fib`, pure), the rtnetlink messages that say
so (`rtmsg`, pure) and the batched netlink socket that sends them (`netlink`, asyncio)."""
