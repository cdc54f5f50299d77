"""rtnetlink without a netlink library, for both daemons: the kernel's route, link, address
and neighbour values (`route`, pure), their messages built and read with `struct` (`rtmsg`,
pure) and the asyncio socket that sends them in batches and reads the kernel's dumps and
change notifications (`driver`)."""
