"""The lab: offline evaluation of policies on the simulator, apart from the product.

`simulate` runs traces to their end on the virtual clock under firmware defaults and under
policies; `oracle` finds what a clock or power limit per phase could save; `peers` holds the
controllers govd is compared with (ondemand, GEOPM's gpu_activity, Zeus's power-limit search),
registered through the `govd.controllers` entry points as any third-party controller is. Only
`govctl simulate`, the tools and the tests import it: the daemon never does.
"""
