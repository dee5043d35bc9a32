//! Embedded MQTT 3.1.1 broker (KubeEdge $hw topics) and client helpers.
#![warn(missing_docs)]
