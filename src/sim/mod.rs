//! The simulated parts of a cluster that cannot run on a development machine: OKG's controller (with
//! Kruise's rollout rules) and a kubelet, written as ordinary API clients against a real kube-apiserver.
