"""What the CLI does without a hub: check and prepare hosts, set up, deploy, tunnel.

The CLI reaches the hub only through :mod:`dobby.client`; the few things it does on its own —
``hosts check``/``bootstrap`` when no hub answers, ``init``, ``deploy``, Vultr provisioning, the
reverse tunnel of ``dobby agent --reverse`` — go through this package, which uses the same
lower layers as the hub (inventory, transport, machines, store) and never the hub itself.
"""
