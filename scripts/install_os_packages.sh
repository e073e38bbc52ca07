#!/usr/bin/env bash
# Installs the OS packages the local stack needs (PostgreSQL server, Redis server) and the tools the
# build uses (Java, Maven, Graphviz for `lakehouse docs erd`) when missing.
# Debian/Ubuntu only (apt); elsewhere it says what to install and stops.
set -euo pipefail

have_postgres() { ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1; }
have_redis() { command -v redis-server >/dev/null 2>&1; }

missing=()
have_postgres || missing+=(postgresql postgresql-contrib)
have_redis || missing+=(redis-server)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing OS packages: ${missing[*]}." >&2
  echo "This setup installs them with apt on Debian/Ubuntu; on this system install the equivalents" >&2
  echo "(PostgreSQL >= 15 server binaries, redis-server, a Java 17 JRE, Maven, Graphviz) and run 'make setup' again." >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "error: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; fi
fi
echo "installing OS packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
