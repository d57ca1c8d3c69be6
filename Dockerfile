# tracekit in a container: the default command runs tracekit-execsnoop.
#   docker build -t tracekit .
#   docker run --rm -it --privileged --pid=host -v /sys/kernel:/sys/kernel tracekit
# --privileged gives the BPF/perf capabilities and lets tracekit mount tracefs if needed;
# --pid=host makes the PIDs printed match the host's; /sys/kernel carries the kernel's BTF.
FROM python:3.11-slim-bookworm

WORKDIR /src
COPY pyproject.toml README.md ./
COPY tracekit ./tracekit
COPY tools ./tools
RUN pip install --no-cache-dir . && rm -rf /src

WORKDIR /
CMD ["tracekit-execsnoop"]
