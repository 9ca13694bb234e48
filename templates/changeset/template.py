#!/usr/bin/env python3
# b2m changeset
# Template Version: 1
# Script: {{name}}.py
# Phrase: {{phrase}}
#
# Runs once for the whole fleet: `b2m execute-changeset {{name}}`, or the next `b2m preflight`.
# b2m sets B2M (its own path), B2M_CHANGESET, B2M_WORKDIR (a folder for working copies and
# backups, kept) and B2M_LOG. Every helper call raises B2MError on failure, so a failed step stops
# the changeset and it is recorded as failed; `b2m execute-changeset {{name}} --retry` runs it again.
# As written it only reports the status: edit the branches below.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import changeset as cs  # noqa: E402  (changeset/changeset.py)

DB = "ipm-db"  # the database this changeset changes (a stem, db.toml key or file name): edit


def main():
    status = cs.db_status(DB)
    cs.log(f"{DB} is {status}")
    if status == "up_to_date":
        # The local copy is the bucket's version: change it, then publish it, e.g.
        #   import sqlite3
        #   conn = sqlite3.connect(cs.db_path(DB))
        #   conn.execute("UPDATE ...")
        #   conn.commit()
        #   conn.close()        # b2m renames the file on upload: never while it is open
        #   cs.db_upload(DB)
        pass
    elif status in ("outdated_db", "missing_local"):
        # The bucket has a newer version: fetch it first (cs.merge(DB) keeps local rows instead).
        #   cs.db_download(DB)
        pass
    elif status == "ready_to_upload":
        # New local data: publish it first, so the change starts from it.
        #   cs.db_upload(DB)
        pass
    elif status == "new_local":
        # Not in the bucket yet.
        #   cs.db_upload(DB)
        pass
    else:
        raise cs.B2MError(["status", DB], 1, status, f"{DB} is {status}: a person must decide", None)


if __name__ == "__main__":
    main()
