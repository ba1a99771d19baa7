#!/usr/bin/env bash
# What the browser tier needs beyond the Python extras: the system Chromium (Playwright's own
# browser download is never used) and a Node recent enough to build the labextension.
# Idempotent: installs only what is missing.
set -euo pipefail

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)

if ((${#need_apt[@]})); then
    # Another apt run may hold the dpkg lock (e.g. a background install): wait for it.
    for _ in $(seq 1 120); do
        if ! pgrep -x apt-get >/dev/null && ! pgrep -x apt >/dev/null && ! pgrep -x dpkg >/dev/null; then
            break
        fi
        echo "browser-setup: waiting for another apt/dpkg run to finish" >&2
        sleep 5
    done
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

chromium --version 2>/dev/null || { echo "browser-setup: chromium did not install" >&2; exit 1; }
# The Jupyter builder runs rspack, which needs Node ^20.19 or >=22.12 (Debian's nodejs is older).
node -e '
const [major, minor] = process.versions.node.split(".").map(Number);
if (!((major === 20 && minor >= 19) || (major === 22 && minor >= 12) || major > 22)) {
  console.error(`browser-setup: Node ${process.version} is too old to build the labextension`);
  process.exit(1);
}
console.log(`node ${process.version}`);
'

# The JS build reaches the npm registry through this machine's TLS-intercepting authority.
if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    echo "browser-setup: export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt before pip install" >&2
fi
