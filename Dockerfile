# azure-npm image: Debian slim with the kernel tools the enforcer drives, and the package.
# Build: make azure-npm-image (needs a container engine).
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables ipset iproute2 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kube ./kube
COPY npm ./npm
COPY simulator ./simulator
COPY conformance ./conformance
RUN pip install --no-cache-dir . && rm -rf /src
WORKDIR /
# The enforcer needs NET_ADMIN and NET_RAW (granted by the DaemonSet), not a privileged container.
ENTRYPOINT ["azure-npm"]
CMD ["start"]
