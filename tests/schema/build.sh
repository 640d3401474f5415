#!/usr/bin/env bash
# Regenerates grafana-dashboard.schema.json, the JSON Schema tests/test_dashboard_schema.py
# validates every generated dashboard against, from the npm packages pinned in
# package-lock.json (@grafana/schema at the Grafana version the compose stack pins).
# Needs node and npm; the tests themselves need neither. Run it after changing the pin:
#   tests/schema/build.sh        (or: make grafana-schema)
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
npx --no-install ts-json-schema-generator --path dashboard.ts --type InferwatchDashboard \
    --tsconfig tsconfig.json --out schema.tmp.json
node provenance.js schema.tmp.json grafana-dashboard.schema.json
rm schema.tmp.json
echo "wrote $(pwd)/grafana-dashboard.schema.json"
