#!/bin/sh
# The redis service's entrypoint (docker-compose.yml): make the ACL file from
# users.acl.in and the password in the compose secret, then start Redis with it:
#
#   start.sh redis-server --save "" --appendonly no
#   -> exec redis-server --save "" --appendonly no --aclfile /tmp/users.acl
#
# The password goes through the shell (builtins and a pipe) and sha256sum,
# never into a process's arguments; the ACL file holds only its hash and is
# readable by this user alone. tests/test_compose_acl.py runs this script
# (with `true` as the command) to render the ACL it loads into Valkey.
set -eu

password_file=${REDIS_PASSWORD_FILE:-/run/secrets/redis_password}
template=${REDIS_ACL_TEMPLATE:-$(dirname "$0")/users.acl.in}
acl_file=${REDIS_ACL_FILE:-/tmp/users.acl}

if [ ! -f "$password_file" ] || [ ! -s "$password_file" ]; then
    echo "start.sh: no password in $password_file: run \`python -m compose.secrets\` on the host first." >&2
    exit 1
fi
password=$(cat "$password_file")
PASSWORD_SHA256=$(printf '%s' "$password" | sha256sum | cut -d ' ' -f 1)
unset password
export PASSWORD_SHA256

umask 077
# Drop comment lines, join "\" continuations, squeeze blanks (the ACL file
# wants one user per line, its rules separated by single spaces).
awk '
    /^[[:space:]]*#/ { next }
    { line = line " " $0 }
    /\\[[:space:]]*$/ { sub(/\\[[:space:]]*$/, "", line); next }
    {
        gsub(/@PASSWORD_SHA256@/, ENVIRON["PASSWORD_SHA256"], line)
        gsub(/[[:space:]]+/, " ", line); sub(/^ /, "", line); sub(/ $/, "", line)
        if (line != "") print line
        line = ""
    }
' "$template" > "$acl_file"
unset PASSWORD_SHA256

exec "$@" --aclfile "$acl_file"
