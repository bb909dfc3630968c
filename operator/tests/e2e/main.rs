//! End-to-end tests against a real kube-apiserver (etcd, controller-manager, scheduler), with
//! kwok nodes standing in for kubelets. Run with `hack/test.sh` or, against any cluster:
//! `cargo test -p renderfarm --test e2e -- --ignored`.

mod faultkit;
mod harness;

mod chaos;
mod chart;
mod cleanup;
mod faults;
mod jobpolicy;
mod kueue;
mod leader;
mod lifecycle;
mod nodeloss;
mod nodes;
mod preview;
mod races;
mod refusals;
mod render;
mod restart;
mod validation;
mod watch;
