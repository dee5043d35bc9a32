//! SQLite access for the edge (rusqlite, WAL): the meta table and the device twin tables, one writer task.
#![warn(missing_docs)]
