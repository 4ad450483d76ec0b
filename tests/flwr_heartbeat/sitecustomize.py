"""Test-only hook for tests/test_deployment.py: a SuperNode declares a 10 s heartbeat
interval (Flower's floor, ``HEARTBEAT_MIN_INTERVAL``) instead of the 30 s default, so the
SuperLink marks a killed SuperNode offline after 2 x 10 s instead of 2 x 30 s.

Flower 1.23 has no flag for it. Python imports this file at start-up when its folder is on
``PYTHONPATH``; it acts only in a ``flower-supernode`` process (the SuperLink, ServerApp and
ClientApps keep Flower's defaults). What the tests assert does not depend on the interval:
only how long they wait for an expiry does.
"""

import sys

INTERVAL = 10.0   # seconds; Flower's HEARTBEAT_MIN_INTERVAL

if sys.argv and sys.argv[0].endswith("flower-supernode"):
    from flwr.client.grpc_rere_client import connection
    from flwr.common import heartbeat

    connection.HEARTBEAT_DEFAULT_INTERVAL = INTERVAL   # declared to the SuperLink
    heartbeat.HEARTBEAT_DEFAULT_INTERVAL = INTERVAL    # how often the node sends one
