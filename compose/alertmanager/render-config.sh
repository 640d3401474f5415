#!/bin/sh
# Writes the Alertmanager config from environment variables, then runs the rest of the
# command line (Alertmanager itself, in the compose stack):
#
#   render-config.sh OUT [COMMAND ARGS...]
#
# Alertmanager reads no environment variables, so this POSIX sh script (the image has no
# Python) builds the receivers that are configured and leaves the others out:
#   AM_PAGER_URL               webhook that prints pages (always; default http://pager:9095/)
#   AM_WEBHOOK_URL             your own webhook
#   AM_SLACK_API_URL           Slack incoming-webhook URL (AM_SLACK_CHANNEL, default #ml-alerts)
#   AM_PAGERDUTY_ROUTING_KEY   PagerDuty Events v2 routing key (critical alerts only)
#   AM_EMAIL_TO                e-mail recipient; needs AM_SMTP_SMARTHOST and AM_SMTP_FROM
#                              (AM_SMTP_USERNAME / AM_SMTP_PASSWORD when the relay wants them)
# Critical alerts go to the receiver "page", everything else to "ticket" (no PagerDuty).
set -eu

if [ "$#" -lt 1 ]; then
    echo "usage: render-config.sh OUT [COMMAND ARGS...]" >&2
    exit 2
fi
out=$1
shift

# A YAML double-quoted string; line breaks are refused below, before any is quoted.
quote() {
    printf '"%s"' "$(printf '%s' "$2" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

# Values with a line break are refused, not mangled.
for name in AM_PAGER_URL AM_WEBHOOK_URL AM_SLACK_API_URL AM_SLACK_CHANNEL \
        AM_PAGERDUTY_ROUTING_KEY AM_EMAIL_TO AM_SMTP_SMARTHOST AM_SMTP_FROM \
        AM_SMTP_USERNAME AM_SMTP_PASSWORD; do
    eval "value=\${$name:-}"
    case $value in
        *'
'*) echo "render-config.sh: $name must be a single line" >&2; exit 2 ;;
    esac
done

pager_url=${AM_PAGER_URL:-http://pager:9095/}
webhook_url=${AM_WEBHOOK_URL:-}
slack_url=${AM_SLACK_API_URL:-}
slack_channel=${AM_SLACK_CHANNEL:-#ml-alerts}
pagerduty_key=${AM_PAGERDUTY_ROUTING_KEY:-}
email_to=${AM_EMAIL_TO:-}
smtp_host=${AM_SMTP_SMARTHOST:-}
smtp_from=${AM_SMTP_FROM:-}
smtp_user=${AM_SMTP_USERNAME:-}
smtp_password=${AM_SMTP_PASSWORD:-}

if [ -n "$email_to" ] && { [ -z "$smtp_host" ] || [ -z "$smtp_from" ]; }; then
    echo "render-config.sh: AM_EMAIL_TO needs AM_SMTP_SMARTHOST and AM_SMTP_FROM" >&2
    exit 2
fi

# printf, not echo: dash's echo would eat the backslashes of quoted values.
line() {
    printf '%s\n' "$*"
}

# receiver NAME WITH_PAGERDUTY: one receiver with every configured integration.
receiver() {
    line "  - name: $1"
    line "    webhook_configs:"
    line "      - url: $(quote AM_PAGER_URL "$pager_url")"
    line "        send_resolved: true"
    if [ -n "$webhook_url" ]; then
        line "      - url: $(quote AM_WEBHOOK_URL "$webhook_url")"
        line "        send_resolved: true"
    fi
    if [ -n "$slack_url" ]; then
        line "    slack_configs:"
        line "      - api_url: $(quote AM_SLACK_API_URL "$slack_url")"
        line "        channel: $(quote AM_SLACK_CHANNEL "$slack_channel")"
        line "        send_resolved: true"
        line "        title: '{{ .CommonLabels.alertname }} ({{ .Status }})'"
        line "        text: '{{ range .Alerts }}{{ .Annotations.summary }} <{{ .Annotations.runbook_url }}|runbook>{{ \"\\n\" }}{{ end }}'"
    fi
    if [ "$2" = yes ] && [ -n "$pagerduty_key" ]; then
        line "    pagerduty_configs:"
        line "      - routing_key: $(quote AM_PAGERDUTY_ROUTING_KEY "$pagerduty_key")"
        line "        send_resolved: true"
    fi
    if [ -n "$email_to" ]; then
        line "    email_configs:"
        line "      - to: $(quote AM_EMAIL_TO "$email_to")"
        line "        send_resolved: true"
    fi
}

{
    line "# Rendered by render-config.sh from the environment; edit the variables, not this file."
    if [ -n "$email_to" ]; then
        line "global:"
        line "  smtp_smarthost: $(quote AM_SMTP_SMARTHOST "$smtp_host")"
        line "  smtp_from: $(quote AM_SMTP_FROM "$smtp_from")"
        line "  smtp_require_tls: true"
        if [ -n "$smtp_user" ]; then
            line "  smtp_auth_username: $(quote AM_SMTP_USERNAME "$smtp_user")"
            line "  smtp_auth_password: $(quote AM_SMTP_PASSWORD "$smtp_password")"
        fi
    fi
    line "route:"
    line "  receiver: ticket"
    line "  group_by: [alertname, model]"
    line "  group_wait: 30s"
    line "  group_interval: 5m"
    line "  repeat_interval: 4h"
    line "  routes:"
    line "    - receiver: page"
    line "      matchers: ['severity=\"critical\"']"
    line "inhibit_rules:"
    line "  # A model that is down cannot also be slow or drifting."
    line "  - source_matchers: ['alertname=\"InferwatchTargetDown\"']"
    line "    target_matchers: ['severity=\"warning\"']"
    line "    equal: [instance]"
    line "receivers:"
    receiver page yes
    receiver ticket no
} > "$out.tmp"
mv "$out.tmp" "$out"

if [ "$#" -gt 0 ]; then
    exec "$@"
fi
