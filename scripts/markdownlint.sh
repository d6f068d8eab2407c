#!/usr/bin/env bash
# Lints README.md and docs/**/*.md with markdownlint-cli2, the version and its
# dependencies pinned by scripts/markdownlint/package-lock.json (npm ci, with
# integrity hashes), installed once into .cache/markdownlint and offline from
# then on. Its rules are in .markdownlint-cli2.jsonc.
#
# Needs Node.js 20 or later with npm (.ci/run installs nodejs). Without npm, or
# offline before the first install, it says so and skips; under CI=true that
# is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${SPOT_AGENT_CACHE:-$PWD/.cache}/markdownlint
lock=scripts/markdownlint/package-lock.json
cli=$cache/node_modules/.bin/markdownlint-cli2

cannot() {
	if [ "${CI:-}" = true ]; then
		echo "markdownlint: $* (CI=true: not skipped)" >&2
		exit 1
	fi
	echo "markdownlint: skipped: $*" >&2
	exit 0
}

command -v node >/dev/null 2>&1 || cannot "no node (apt-get install nodejs)"
if ! [ -x "$cli" ] || ! cmp -s "$lock" "$cache/package-lock.json"; then
	command -v npm >/dev/null 2>&1 || cannot "no npm to install markdownlint-cli2 with (it comes with Node.js)"
	echo "== install markdownlint-cli2 into $cache (npm ci, $lock)"
	rm -rf "$cache"
	mkdir -p "$cache"
	cp scripts/markdownlint/package.json "$lock" "$cache/"
	if ! (cd "$cache" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
		rm -rf "$cache"
		cannot "npm ci failed (offline?)"
	fi
fi

mapfile -t docs < <(git ls-files --cached --others --exclude-standard -- README.md 'docs/*.md' 'docs/**/*.md' | sort -u)
"$cli" "${docs[@]}"
