# The images a kind node runs before anything is loaded into it: the control plane's static
# pods, kube-proxy, CoreDNS, the pod sandbox, and the pod network agent. Each is a Debian base
# with a binary built from its Go module (or pause.c), tagged by hack/kind.sh with the name
# kubeadm and containerd ask for.
ARG BASE_IMAGE=debian:bookworm-slim

# kube-apiserver, kube-controller-manager, kube-scheduler, etcd: kubeadm's manifests name the
# command, so a binary on PATH is all they need.
FROM ${BASE_IMAGE} AS component
ARG BINARY
COPY --chmod=0755 bin/${BINARY} /usr/local/bin/${BINARY}

FROM ${BASE_IMAGE} AS netbase
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       iptables nftables conntrack iproute2 curl jq ca-certificates >/dev/null \
    && rm -rf /var/lib/apt/lists/*

FROM netbase AS kube-proxy
COPY --chmod=0755 bin/kube-proxy /usr/local/bin/kube-proxy

FROM netbase AS nodenet
COPY --chmod=0755 nodenet.sh /usr/local/bin/nodenet

FROM ${BASE_IMAGE} AS coredns
COPY --chmod=0755 bin/coredns /coredns
EXPOSE 53 53/udp
ENTRYPOINT ["/coredns"]

FROM scratch AS pause
COPY --chmod=0755 bin/pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
