//! Errors of the Modbus mapper's profile decoding and value conversion.

/// A visitor, protocol block or value the Modbus mapper cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `visitorConfig` of a property is not a Modbus visitor.
    #[error("property {property}: bad modbus visitorConfig: {reason}")]
    Visitor {
        /// Property name.
        property: String,
        /// What is wrong.
        reason: String,
    },
    /// `protocol_config` of a device is not a Modbus TCP/RTU block.
    #[error("device {device}: bad modbus protocol_config: {reason}")]
    Protocol {
        /// Device id.
        device: String,
        /// What is wrong.
        reason: String,
    },
    /// A value cannot be converted to or from registers.
    #[error("value conversion: {0}")]
    Convert(String),
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
