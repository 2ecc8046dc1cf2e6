# The azure-npm image: the enforcer installed from this checkout's wheel on a Debian base
# that holds the kernel tools it drives (iptables nft and legacy, ipset, nftables, iproute2).
#
# Build with `make azure-npm-image` (imagebuild/build.py), not by hand: it first makes the base,
# a debootstrap of Debian packages imported as localhost/azure-npm-base:<release>-<key>, and
# passes its name as BASE. Why not `FROM debian:bookworm-slim`: builders and nodes may reach
# no public image registry, only Debian's package mirror; the base is also pinned that way
# (cached, its package versions in the image's labels). The build context is a directory
# of its own holding the wheel, pip (as a wheel) and the dependency lock. A Dockerfile rather
# than buildah commands: docker (BuildKit), podman and buildah all build this one file. No
# `# syntax=` line: it would make BuildKit fetch its frontend from a registry, and the
# built-in one has RUN --mount.
ARG BASE
FROM ${BASE}

# pip runs from its wheel, mounted for this step only, with the host's pip settings and CA
# bundle as secrets (the TLS-inspecting proxy of a CI machine): none of them stays in the
# image, and neither does pip. Exact dependency versions come from imagebuild/requirements.txt;
# `pip check` fails the build when they no longer satisfy the project's requirements.
# SOURCE_HASH names the mounted sources: engines cache a RUN step by its text, not by what a
# bind mount holds, so without it a new wheel would meet the old step's layer.
ARG SOURCE_HASH
RUN --mount=type=bind,target=/mnt/build \
    --mount=type=secret,id=pip.conf \
    --mount=type=secret,id=ca-bundle \
    echo "installing azure-npm, source ${SOURCE_HASH}" \
 && python3 -m venv --without-pip /opt/azure-npm \
 && PIP_CONFIG_FILE=/run/secrets/pip.conf /opt/azure-npm/bin/python /mnt/build/pip.whl/pip install \
      --no-deps --require-virtualenv -r /mnt/build/requirements.txt /mnt/build/azure_npm-*.whl \
 && /opt/azure-npm/bin/python /mnt/build/pip.whl/pip check

# The root filesystem is read-only in the DaemonSet: bytecode was compiled at install time.
ENV PATH=/opt/azure-npm/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The enforcer needs NET_ADMIN and NET_RAW (granted by the DaemonSet), not a privileged container.
ENTRYPOINT ["azure-npm"]
CMD ["start"]
