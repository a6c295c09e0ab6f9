"""Connects the PyPI `certstream` client to a certstream server and records what it gets.

usage: certstream_client.py URL COUNT OUT.json
Exits 0 once COUNT certificate_update messages arrived, after writing them (trimmed) to OUT.
"""
import json
import os
import sys

import certstream

url, want, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
got = []


def on_message(message, context):
    if message["message_type"] != "certificate_update":
        return
    d = message["data"]
    leaf = d["leaf_cert"]
    got.append(
        {
            "update_type": d["update_type"],
            "cert_index": d["cert_index"],
            "cert_link": d["cert_link"],
            "seen": d["seen"],
            "source": d["source"],
            "subject": leaf["subject"],
            "all_domains": leaf["all_domains"],
            "fingerprint": leaf["fingerprint"],
            "serial_number": leaf["serial_number"],
            "not_before": leaf["not_before"],
            "not_after": leaf["not_after"],
            "extensions": sorted(leaf["extensions"].keys()),
            "chain": len(d["chain"]),
            "has_der": "as_der" in leaf,
        }
    )
    if len(got) >= want:
        with open(out, "w") as f:
            json.dump(got, f)
        os._exit(0)


certstream.listen_for_events(on_message, url=url, skip_heartbeats=True)
