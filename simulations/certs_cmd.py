"""``fedrec certs --out DIR``: development CA, SuperLink TLS certificate and SuperNode
authentication keys (``fedrec.server.certs``; cryptography only)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    """Write the credentials into ``args.out`` and say what was made."""
    from fedrec.server.certs import make_credentials

    made = make_credentials(args.out, args.nodes, args.hosts, args.days, args.force)
    print(f"{args.out}: ca.crt, server.pem, server.key, "
          f"{len(made.node_keys)} SuperNode key pairs (node-<i>, node-<i>.pub)")
    return 0
