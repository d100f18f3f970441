# The box tests/test_systemd.py installs hodei on, as a fresh Debian one: hodei-base:bookworm
# (debootstrap minbase with python3 and python3-venv) with systemd as init, and sudo, which the
# README's install steps use. Built by scripts/docker/systemd-image.sh; booted with network none.
ARG BASE=hodei-base:bookworm
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd systemd-sysv sudo \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb
# What `docker stop` sends for systemd to shut down cleanly.
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
