#!/usr/bin/env bash
# Every performance figure of the project, each beside its reference or target, in one go:
# against sentence-transformers and the HTTP service, latency and memory inside PostgreSQL, and
# keeping a table in sync. About 8 minutes on 2 cores on a quiet day once the reference
# environment is built, 20 and more on a slow one (sync_throughput.sh alone took 14 on 2026-12-07).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for bench in vs_sentence_transformers latency_memory sync_throughput; do
    echo "## bench/$bench.sh"
    echo
    "$here/$bench.sh" 2>&1 | grep -v '^==>'
    echo
done
