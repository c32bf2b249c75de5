#!/usr/bin/env bash
# Checks that the generated CSI bindings in src/gen/ are exactly what
# `buf generate` produces from proto/ with buf.gen.yaml, and that the schema
# passes `buf lint` and `buf format`.
#
# The regeneration goes to a scratch directory and is compared with `diff -r`,
# so the check neither modifies the working tree nor depends on src/gen/ being
# committed to git.
#
# Usage: scripts/check-generated.sh          # check only (CI)
#        scripts/check-generated.sh --fix    # regenerate src/gen/ in place first
#
# Exit status: 0 up to date, 1 out of date / lint or format failure, 2 setup error.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# node_modules/.bin/buf is a node launcher script; make sure `node` resolves.
export PATH="$root/node_modules/.bin:$PATH"
buf="$root/node_modules/.bin/buf"
if [[ ! -x "$buf" ]]; then
  echo "check-generated: $buf not found (install dev dependencies first: npm ci)" >&2
  exit 2
fi

if [[ "${1:-}" == "--fix" ]]; then
  "$buf" generate
  echo "check-generated: regenerated src/gen/"
elif [[ $# -gt 0 ]]; then
  echo "usage: $0 [--fix]" >&2
  exit 2
fi

status=0

# 1. Lint and formatting of the schema.
if ! "$buf" lint; then
  echo "check-generated: buf lint failed (see above)" >&2
  status=1
fi
if ! "$buf" format --diff --exit-code proto; then
  echo "check-generated: proto/ is not buf-formatted; run: node_modules/.bin/buf format -w proto" >&2
  status=1
fi

# 2. Regenerate into a scratch directory and compare with src/gen/.
tmp="$(mktemp -d "${TMPDIR:-/tmp}/check-generated.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# -o prefixes every `out:` of buf.gen.yaml, so this writes $tmp/src/gen/...
"$buf" generate -o "$tmp"

if [[ ! -d src/gen ]]; then
  echo "check-generated: src/gen/ is missing; run: node_modules/.bin/buf generate" >&2
  exit 1
fi

changes="$(diff -rq "$tmp/src/gen" src/gen 2>&1 || true)"
if [[ -n "$changes" ]]; then
  echo "check-generated: src/gen/ is out of date with proto/ and buf.gen.yaml." >&2
  echo "Differing files:" >&2
  # Turn diff's messages into plain repository paths.
  while IFS= read -r line; do
    case "$line" in
      "Files "*" and "*" differ")
        f="${line#Files "$tmp"/}"
        echo "  changed: ${f%% and *}" >&2
        ;;
      "Only in $tmp/"*)
        d="${line#Only in "$tmp"/}"
        echo "  missing: ${d%%: *}/${d#*: }" >&2
        ;;
      "Only in "*)
        d="${line#Only in }"
        echo "  stale:   ${d%%: *}/${d#*: }" >&2
        ;;
      *) echo "  $line" >&2 ;;
    esac
  done <<<"$changes"
  echo "Run: node_modules/.bin/buf generate   (or: $0 --fix)" >&2
  status=1
fi

if [[ $status -eq 0 ]]; then
  echo "check-generated: src/gen/ is up to date; buf lint and buf format are clean"
fi
exit "$status"
