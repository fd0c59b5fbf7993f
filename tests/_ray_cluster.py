"""A two-node Ray cluster on this machine, for tests: run as a process of its own.

Prints one JSON line (the address, the worker node's id), then obeys stdin: ``kill-worker``
removes the worker node at once (its processes die), ``quit`` shuts the cluster down. The
caller sets RAY_AUTH_MODE=token and RAY_AUTH_TOKEN in the environment: every node and every
driver must present the token.
"""

from __future__ import annotations

import json
import sys

from ray.cluster_utils import Cluster

STORE = 100 * 2**20  # bytes of object store per node (Ray's default claims several GiB)


def main() -> int:
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "object_store_memory": STORE,
                                      "resources": {"head_node": 1}})
    worker = cluster.add_node(num_cpus=1, object_store_memory=STORE,
                              resources={"worker_node": 1})
    cluster.wait_for_nodes()
    print(json.dumps({"address": cluster.address, "worker_node_id": worker.node_id,
                      "head_node_id": cluster.head_node.node_id}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "kill-worker":
            cluster.remove_node(worker, allow_graceful=False)
            print("killed", flush=True)
        elif command == "quit":
            break
    cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
