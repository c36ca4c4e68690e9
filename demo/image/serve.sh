#!/bin/sh
# A configurable stand-in for a web service, for the demo and the tests.
# Everything it does is set by environment variables, so one image can play a
# healthy service, a broken one (HEALTH_STATUS=503), a slow one (HEALTH_DELAY)
# or a late starter (START_DELAY):
#   PORT           listen port (default 8080)
#   HEALTH_STATUS  status of /cgi-bin/health (default 200)
#   HEALTH_BODY    body of /cgi-bin/health (default ok; no quotes)
#   HEALTH_DELAY   seconds /cgi-bin/health sleeps before answering (default 0)
#   VERSION        reported by /cgi-bin/status as JSON
#   START_DELAY    seconds to wait before listening at all (default 0)
set -eu
mkdir -p /www/cgi-bin
cat > /www/cgi-bin/health <<EOF
#!/bin/sh
sleep ${HEALTH_DELAY:-0}
printf 'Status: ${HEALTH_STATUS:-200} Set\r\nContent-Type: text/plain\r\n\r\n${HEALTH_BODY:-ok}\n'
EOF
cat > /www/cgi-bin/status <<EOF
#!/bin/sh
printf 'Content-Type: application/json\r\n\r\n{"status": "ok", "version": "${VERSION:-unknown}"}\n'
EOF
chmod +x /www/cgi-bin/health /www/cgi-bin/status
echo "<h1>deployproof demo ${VERSION:-}</h1>" > /www/index.html
# Not `exec httpd`: as PID 1, httpd would ignore SIGTERM (the kernel drops signals PID 1
# has no handler for), so every `docker stop` and every recreate of a new version would
# wait out the 10 s grace period and end in SIGKILL. The shell stops it and exits 0, as a
# well-behaved service does (the shutdown suite, E2E-4, checks exactly this). The trap is
# set first, and the start delay is waited for as a child too: SIGTERM ends it at once.
server=
trap 'kill -TERM $server 2>/dev/null || :; [ -z "$server" ] || wait "$server" || :; exit 0' TERM INT
sleep "${START_DELAY:-0}" &
server=$!
wait "$server"
httpd -f -p "${PORT:-8080}" -h /www &
server=$!
wait "$server"
