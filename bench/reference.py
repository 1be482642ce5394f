#!/usr/bin/env python3
"""The straightforward reference orderwatch's ingest is measured against.

Fetch one status-changes answer with urllib, json.loads it, record each order
with sqlite3 `INSERT OR IGNORE` (dedupe on (order_id, status)), append each
new transition as a CloudEvent JSON line, fsync, commit. Nothing clever: this
is what a careful first version in Python looks like.

usage: reference.py URL API_KEY DB_PATH OUT_PATH
"""

import datetime
import json
import os
import sqlite3
import sys
import urllib.request


def main():
    url, key, db_path, out_path = sys.argv[1:5]
    req = urllib.request.Request(url, headers={"X-DC-DEVKEY": key, "Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        answer = json.loads(resp.read())
    source = url.split("/order/")[0]

    db = sqlite3.connect(db_path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS transitions ("
        " order_id INTEGER NOT NULL, status TEXT NOT NULL, certificate_id INTEGER,"
        " seen_at TEXT NOT NULL, UNIQUE (order_id, status))"
    )
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    new = 0
    with open(out_path, "a", encoding="utf-8") as out:
        for order in answer.get("orders", []):
            cur = db.execute(
                "INSERT OR IGNORE INTO transitions (order_id, status, certificate_id, seen_at) VALUES (?, ?, ?, ?)",
                (order["order_id"], order["status"], order.get("certificate_id"), now),
            )
            if cur.rowcount == 1:
                new += 1
                event = {
                    "specversion": "1.0",
                    "id": "%d:%s" % (order["order_id"], order["status"]),
                    "source": source,
                    "type": "com.digicert.certcentral.order.status_changed",
                    "subject": "orders/%d" % order["order_id"],
                    "time": now,
                    "datacontenttype": "application/json",
                    "data": {
                        "order_id": order["order_id"],
                        "certificate_id": order.get("certificate_id"),
                        "status": order["status"],
                        "previous_status": None,
                    },
                }
                out.write(json.dumps(event, separators=(",", ":")) + "\n")
        out.flush()
        os.fsync(out.fileno())
    db.commit()
    print(new)


if __name__ == "__main__":
    main()
