//! Fuzzes the resource strings of cloud-edge envelopes (`ke_core::resource`): cloudhub prefixes
//! every resource an edge sends with `add_node_prefix`, the controllers read it back with
//! `strip_node_prefix` / `node_of`, and the edge splits `<ns>/<type>/<name>` with `Resource::parse`.
//!
//! Input: `<node>\n<resource>` (UTF-8; without a newline the whole input is the resource and the node
//! is `edge-1`). Checks, besides never panicking: prefixing then stripping gives back the node and
//! resource, `node_of` finds the node, `strip_node_prefix` and `add_node_prefix` are inverse, and
//! `Resource::format` rebuilds what `Resource::parse` split.
#![no_main]

use ke_core::resource::{Resource, add_node_prefix, edge_kind, node_of, strip_node_prefix};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (node, resource) = text.split_once('\n').unwrap_or(("edge-1", text));

    // What cloudhub does with what `node` sends.
    if !node.is_empty() && !node.contains('/') && !resource.is_empty() {
        let cloud = add_node_prefix(node, resource);
        assert_eq!(strip_node_prefix(&cloud), Some((node, resource)), "{cloud:?}");
        assert_eq!(node_of(&cloud), Some(node), "{cloud:?}");
    }

    // Any resource the controllers see.
    for s in [resource, text] {
        if let Some((n, tail)) = strip_node_prefix(s) {
            assert_eq!(add_node_prefix(n, tail), s);
            assert_eq!(node_of(s), Some(n));
        }
        let parsed = Resource::parse(s);
        assert_eq!(parsed.is_some(), s.contains('/'), "Resource::parse({s:?})");
        assert_eq!(edge_kind(s), parsed.map(|r| r.kind));
        if let Some(r) = parsed {
            // `<ns>/<type>/` has an empty name, which `format` leaves out with its slash.
            if !r.name.is_empty() || s.matches('/').count() == 1 {
                assert_eq!(Resource::format(r.namespace, r.kind, r.name), s);
            }
        }
    }
});
