//! Integration tests of ke-store against real SQLite files.

mod meta;
mod schema;
