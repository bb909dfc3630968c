# kube-network-policies for the kind lane: the static binary network-policies.sh builds from
# its Go module, alone in the image (it talks netlink to the kernel, no tools needed).
FROM scratch
COPY --chmod=0755 kube-network-policies /bin/kube-network-policies
ENTRYPOINT ["/bin/kube-network-policies"]
