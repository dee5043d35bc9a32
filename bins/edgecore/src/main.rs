//! edgecore: the KubeEdge edge daemon.

fn main() {}
