"""The kernel side: what the FIB should hold (`fib`, `planner`: pure), which routes of others
become BGP routes (`learn`, pure), and the asyncio shell that programs and watches the kernel
(`driver`) over the rtnetlink socket of `common.netlink`."""
