#!/bin/sh
# Entry point of the stack's Alertmanager (docker-compose.yaml runs it in the prom/alertmanager
# image, whose busybox has sh, grep, sed and awk): renders the template alertmanager.yml from
# the environment, then runs Alertmanager on the result with the arguments given.
#
#   entrypoint.sh [alertmanager flags...]
#
#   ALERTMANAGER_TEMPLATE     the template (default: alertmanager.yml beside this script)
#   ALERTMANAGER_CONFIG       the rendered config (default: $TMPDIR/alertmanager/alertmanager.yml);
#                             the files of `${file:NAME}` go into the same folder, mode 0600
#   ALERTMANAGER_BIN          the binary (default /bin/alertmanager, the image's; Debian's is
#                             /usr/bin/prometheus-alertmanager)
#   ALERTMANAGER_RENDER_ONLY  1: render and stop (tests run `amtool check-config` on the result)
#
# Every variable the template names must be set, and not to .env.example's CHANGE_ME. A value
# written into the config lands in a double-quoted YAML string: a quote, a backslash or a line
# break would end it early, so such a value is refused; `${file:NAME}` values may hold anything.
# tests/stack/test_alert_delivery.py runs this script with Debian's Alertmanager.
set -eu

die() {
    echo "alertmanager-entrypoint: $*" >&2
    exit 1
}

template=${ALERTMANAGER_TEMPLATE:-$(dirname "$0")/alertmanager.yml}
config=${ALERTMANAGER_CONFIG:-${TMPDIR:-/tmp}/alertmanager/alertmanager.yml}
[ -r "$template" ] || die "cannot read the template $template"

newline='
'
carriage_return=$(printf '\r')
# Comment lines are left as they are (they may show the syntax).
for token in $(grep -v '^[[:space:]]*#' "$template" | grep -o '[$][{][a-zA-Z0-9_:]*[}]' | sed -e 's/^[$][{]//' -e 's/[}]$//' | sort -u); do
    name=${token#file:}
    case "$name" in
        "" | [0-9]* | *[!A-Za-z0-9_]*) die "the template names an invalid variable: \${$token}" ;;
    esac
    eval "value=\${$name-}"
    case "$value" in
        "") die "$name is not set (copy .env.example to .env and fill it in)" ;;
        *CHANGE_ME*) die "$name still holds the .env.example placeholder" ;;
    esac
    if [ "$token" = "$name" ]; then
        case "$value" in
            *\"* | *\\* | *"$newline"* | *"$carriage_return"*)
                die "$name holds a quote, a backslash or a line break, which the config cannot take" ;;
        esac
    fi
done

dir=$(dirname "$config")
umask 077
mkdir -p "$dir"
# awk reads the values from ENVIRON: nothing in them is interpreted, whatever they hold.
awk -v dir="$dir" '
/^[[:space:]]*#/ {
    print
    next
}
{
    line = $0
    out = ""
    while (match(line, /[$][{](file:)?[A-Za-z_][A-Za-z0-9_]*[}]/)) {
        token = substr(line, RSTART + 2, RLENGTH - 3)
        out = out substr(line, 1, RSTART - 1)
        if (substr(token, 1, 5) == "file:") {
            name = substr(token, 6)
            path = dir "/" name
            printf "%s", ENVIRON[name] > path
            close(path)
            out = out path
        } else {
            out = out ENVIRON[token]
        }
        line = substr(line, RSTART + RLENGTH)
    }
    print out line
}' "$template" >"$config.tmp"
mv "$config.tmp" "$config"
echo "alertmanager-entrypoint: rendered $config"

if [ "${ALERTMANAGER_RENDER_ONLY:-}" = 1 ]; then
    exit 0
fi
exec "${ALERTMANAGER_BIN:-/bin/alertmanager}" --config.file="$config" "$@"
