#!/usr/bin/env bash
# The servers and tools the test suite runs for real, from Debian's packages when missing:
# Java 17 runs the Kafka broker, Maven fetches its jars, promtool (package prometheus) lints /metrics,
# Alertmanager receives our alerts, docker-compose validates docker-compose.yml (no engine needed),
# PostgreSQL is the store the store's tests also run on (deploy/postgres/server.py starts it).
set -euo pipefail
need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v docker-compose >/dev/null || need+=(docker-compose)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root or sudo to install: ${need[*]} (apt-get install ${need[*]})" >&2; exit 1; }
  sudo=sudo
fi
echo "installing Debian packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
