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
    # LS and PS are escaped: YAML keeps them raw, but trims the spaces next to them.
    printf '"%s"' "$(printf '%s' "$2" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' \
        -e "s/$lsep/\\\\L/g" -e "s/$psep/\\\\P/g")"
}

# As UTF-8 bytes: the C1 control characters (NEL, U+0085, among them: YAML folds it like
# a line break, refuses the others), and LS and PS, which YAML trims the spaces around.
c1_lead=$(printf '\302')
c1_tail=$(printf '[\200-\237]')
# U+FFFE and U+FFFF, which YAML refuses too.
nonchar=$(printf '\357\277[\276\277]')
lsep=$(printf '\342\200\250')
psep=$(printf '\342\200\251')

fail() {
    echo "render-config.sh: $*" >&2
    exit 2
}

# Values with a line break or another control character are refused, not mangled: YAML
# folds a carriage return (a .env saved with CRLF) into a space and refuses the others, so
# Alertmanager would run with a changed value or not start, without naming the variable.
for name in AM_PAGER_URL AM_WEBHOOK_URL AM_SLACK_API_URL AM_SLACK_CHANNEL \
        AM_PAGERDUTY_ROUTING_KEY AM_EMAIL_TO AM_SMTP_SMARTHOST AM_SMTP_FROM \
        AM_SMTP_USERNAME AM_SMTP_PASSWORD; do
    eval "value=\${$name:-}"
    case $value in
        *'
'*) fail "$name must be a single line" ;;
        *[[:cntrl:]]*|*"$c1_lead"$c1_tail*|*$nonchar*) fail "$name must not contain control characters (tab, carriage return)" ;;
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
    fail "AM_EMAIL_TO needs AM_SMTP_SMARTHOST and AM_SMTP_FROM"
fi
# Alertmanager checks these only when it loads the config; its error names neither the
# variable nor the value, and the container restarts over and over.
for name in AM_PAGER_URL AM_WEBHOOK_URL AM_SLACK_API_URL; do
    eval "value=\${$name:-}"
    case $value in
        ''|http://?*|https://?*) ;;
        # The value is not echoed: a Slack URL holds its token.
        *) fail "$name must be an http:// or https:// URL" ;;
    esac
done
if [ -n "$email_to" ]; then
    case $smtp_host in
        *?:[0-9]*) ;;
        *) fail "AM_SMTP_SMARTHOST must be HOST:PORT (e.g. smtp.example.com:587), got '$smtp_host'" ;;
    esac
    # A password without a user name would be left out, and the relay refuse every mail.
    if [ -n "$smtp_password" ] && [ -z "$smtp_user" ]; then
        fail "AM_SMTP_PASSWORD needs AM_SMTP_USERNAME"
    fi
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

# The config holds the SMTP password and the PagerDuty key, on a persistent volume.
umask 077
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
    line "  # A model whose every target is down cannot also be slow or drifting: its warnings"
    line "  # wait. Only then does InferwatchTargetDown fire for the model itself, without an"
    line "  # instance: the per-model warnings add up every replica, so they still count while one"
    line "  # serves. The model must be named: Alertmanager reads a missing label as an empty one,"
    line "  # so an alert without one would otherwise hold back every warning without one."
    line "  - source_matchers: ['alertname=\"InferwatchTargetDown\"', 'model=~\".+\"', 'instance=\"\"']"
    line "    target_matchers: ['severity=\"warning\"']"
    line "    equal: [model]"
    line "receivers:"
    receiver page yes
    receiver ticket no
} > "$out.tmp"
mv "$out.tmp" "$out"

if [ "$#" -gt 0 ]; then
    exec "$@"
fi
