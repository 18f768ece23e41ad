#!/usr/bin/env bash
# Append every evidence bundle's summary.md under DIR to the job summary (GitHub caps it at
# 1 MiB, so the text is cut before that), then say where the pipeline_run records are.
set -euo pipefail
dir=${1:?usage: step_summary.sh EVIDENCE_DIR}
out=${GITHUB_STEP_SUMMARY:-/dev/stdout}
{
  find "$dir" -mindepth 2 -maxdepth 2 -name summary.md -print0 2>/dev/null \
    | sort -z | xargs -0 -r cat | head -c 900000
  if [ -f "$dir/pipeline_run.ndjson" ]; then
    echo
    echo "pipeline_run records: $(wc -l < "$dir/pipeline_run.ndjson") in $dir/pipeline_run.ndjson"
  else
    echo "no pipeline_run records in $dir"
  fi
} >> "$out"
