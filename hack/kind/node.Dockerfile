# The kind node image for machines that cannot pull kindest/node: kind's base image rebuilt on
# Debian's packages (systemd, containerd, runc, CNI plugins) with kind's own base files, plus
# kubelet, kubeadm, kubectl and crictl built from Go modules. hack/kind.sh stages the build
# context (kind-base/ comes from the sigs.k8s.io/kind module) and then imports the control
# plane images into the image's containerd, the way `kind build node-image` does.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

COPY --chmod=0755 kind-base/usr/local/bin/ /usr/local/bin/
RUN DEBIAN_FRONTEND=noninteractive clean-install \
      systemd \
      conntrack iptables nftables iproute2 ethtool util-linux mount kmod \
      libseccomp2 pigz e2fsprogs bash ca-certificates curl jq procps \
      containerd runc containernetworking-plugins \
    && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \
    && rm -f /lib/systemd/system/multi-user.target.wants/* \
    && rm -f /etc/systemd/system/*.wants/* \
    && rm -f /lib/systemd/system/local-fs.target.wants/* \
    && rm -f /lib/systemd/system/sockets.target.wants/*udev* \
    && rm -f /lib/systemd/system/sockets.target.wants/*initctl* \
    && rm -f /lib/systemd/system/basic.target.wants/* \
    && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \
    && ln -sf /usr/lib/systemd/systemd /sbin/init \
    # kind's units and containerd config expect these paths; Debian installs elsewhere.
    && ln -s /usr/bin/containerd /usr/local/bin/containerd \
    && mkdir -p /opt/cni && ln -s /usr/lib/cni /opt/cni/bin

COPY kind-base/kind/ /kind/
COPY kind-base/etc/ /etc/
RUN chmod 0755 /kind /kind/bin /kind/bin/* \
    && ctr oci spec \
        | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
        | jq 'del(.process.rlimits)' \
        > /etc/containerd/cri-base.json \
    && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \
    && systemctl mask systemd-binfmt.service \
    && mkdir -p /etc/kubernetes/manifests /kind/manifests

COPY --chmod=0755 bin/kubelet bin/kubeadm bin/kubectl bin/crictl /usr/bin/
COPY --chmod=0644 version /kind/version
COPY --chmod=0644 default-cni.yaml /kind/manifests/default-cni.yaml

ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]
