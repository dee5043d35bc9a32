//! Typed cloudcore.yaml / edgecore.yaml (KubeEdge v1alpha1): defaults, strict loading, min/default printers.
#![warn(missing_docs)]
