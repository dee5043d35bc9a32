//! cloudcore: the KubeEdge cloud daemon.

fn main() {}
