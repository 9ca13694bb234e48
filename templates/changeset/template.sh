#!/bin/sh
# b2m changeset
# Template Version: 1
# Script: {{name}}.sh
# Phrase: {{phrase}}
#
# Runs once for the whole fleet: `b2m execute-changeset {{name}}`, or the next `b2m preflight`.
# b2m sets B2M (its own path), B2M_CHANGESET, B2M_WORKDIR (a folder for working copies and
# backups, kept) and B2M_LOG. A non-zero exit marks the changeset failed; `--retry` runs it again.
# As written it only reports the status: edit below.
set -eu

"$B2M" status

# "$B2M" download ipm-db
# sqlite3 "$(...)" "UPDATE ..."
# "$B2M" upload ipm-db
