//! keadm: install and manage KubeEdge cloud and edge nodes.

fn main() {}
