#!/usr/bin/env bash
# cargo-deny over the dependency tree, with the policy in .cargo/deny.toml (every exception has
# its reason there). Installs cargo-deny from crates.io if missing.
#
#   cross/deny.sh            # licenses, bans, sources; and advisories if the database is reachable
#
# The advisories check needs the RustSec advisory database, which cargo-deny clones from GitHub.
# Where GitHub cannot be reached (our build machines reach only the package registries), the
# clone fails and the check cannot run: this script then says so and runs the other three.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deny >/dev/null || cargo install --locked cargo-deny --version '^0.20'

cfg=.cargo/deny.toml
if timeout 20 git ls-remote --heads https://github.com/rustsec/advisory-db main >/dev/null 2>&1; then
  cargo deny --config "$cfg" check --hide-inclusion-graph
else
  echo "cross/deny.sh: the RustSec advisory database (github.com/rustsec/advisory-db) cannot be"
  echo "  fetched from here, so the advisories check is skipped; licenses, bans and sources run."
  cargo deny --config "$cfg" check --hide-inclusion-graph licenses bans sources
fi
