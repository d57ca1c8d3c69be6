# tracekit in a container. The default command runs tracekit-execsnoop; any tool, or the
# `tracekit` command, can be given instead.
#
#   docker build -t tracekit .
#   docker run --rm -it --pid=host --cap-add SYS_ADMIN \
#       --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
#       -v /sys/kernel:/sys/kernel tracekit
#
# Why each option is there:
# - SYS_ADMIN covers bpf(), perf_event_open() and mounting tracefs. Newer engines also
#   accept the narrower `--cap-add BPF --cap-add PERFMON`. Debian's docker.io 20.10 does
#   not know those names. `--privileged` fails on hosts whose capability bounding set
#   lacks a capability.
# - Docker's default seccomp profile blocks bpf() and perf_event_open(), and its AppArmor
#   profile blocks the tracefs mount.
# - --pid=host makes the PIDs printed match the host's.
# - /sys/kernel carries the kernel's BTF and tracefs.
#
# Agent mode: ebpf_exporter configs in ./configs, metrics on the host's 127.0.0.1:9435
#   docker run -d --pid=host --cap-add SYS_ADMIN --security-opt seccomp=unconfined \
#       --security-opt apparmor=unconfined -v /sys/kernel:/sys/kernel -v /sys/fs/cgroup:/sys/fs/cgroup:ro \
#       -v "$PWD/configs:/etc/tracekit/agent:ro" -p 127.0.0.1:9435:9435 tracekit \
#       tracekit agent --config /etc/tracekit/agent --listen 0.0.0.0:9435 --log-json
# (docker kill -s HUP reloads the configs; docker stop detaches every probe)
FROM debian:bookworm-slim

# Behind a TLS-inspecting proxy (corporate networks, some CI machines) pip needs the
# proxy's CA: --build-arg EXTRA_CA_CERTS="$(cat /usr/local/share/ca-certificates/*.crt)".
ARG EXTRA_CA_CERTS=""

# Debian's python refuses pip outside a venv (PEP 668), so tracekit lives in one.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && if [ -n "$EXTRA_CA_CERTS" ]; then printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/extra.crt \
         && update-ca-certificates; fi \
    && python3 -m venv /opt/tracekit
ENV PATH=/opt/tracekit/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY tracekit ./tracekit
COPY tools ./tools
RUN PIP_CERT=/etc/ssl/certs/ca-certificates.crt pip install --no-cache-dir '.[otlp]' && rm -rf /src

WORKDIR /
EXPOSE 9435
CMD ["tracekit-execsnoop"]
