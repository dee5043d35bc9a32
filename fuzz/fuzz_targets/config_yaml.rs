//! Fuzzes the cloudcore/edgecore configuration loader: `ke_config::DaemonConfig::from_yaml_str` for
//! `CloudCoreConfig` and `EdgeCoreConfig` (what `--config <file>` reads), then what the daemons do
//! with a loaded file: `validate`, `EdgeHub::http_server_addr`, `ke_mqtt::ServerUrl::parse` of the
//! eventbus broker URLs, `Token::parse` of `modules.edgehub.token`.
//!
//! Checks: any text gives a value or an error, never a panic (error messages render too); a loaded
//! configuration prints (`to_yaml`, `--minconfig`, `--defaultconfig`) and `to_yaml` re-parses to an
//! equal value, as `DaemonConfig::to_yaml` promises; a parsed broker URL prints back to itself.
#![no_main]

use ke_config::{CloudCoreConfig, DaemonConfig, EdgeCoreConfig};
use ke_mqtt::ServerUrl;
use libfuzzer_sys::fuzz_target;

/// Loads `text` as `C`; if it loads, checks printing and the `to_yaml` round trip.
fn load<C: DaemonConfig + PartialEq + std::fmt::Debug>(text: &str) -> Option<C> {
    let c = match C::from_yaml_str(text, "fuzz.yaml") {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return None;
        }
    };
    if let Err(e) = c.validate() {
        let _ = e.to_string();
    }
    let yaml = c.to_yaml().expect("a loaded configuration must print");
    let again = C::from_yaml_str(&yaml, "printed.yaml")
        .unwrap_or_else(|e| panic!("printed configuration does not load: {e}\n{yaml}"));
    assert_eq!(again, c, "to_yaml does not round-trip:\n{yaml}");
    c.to_min_yaml().expect("--minconfig must print");
    c.to_default_yaml().expect("--defaultconfig must print");
    Some(c)
}

/// A broker URL as edgecore parses it; a parsed URL prints back to itself.
fn server_url(url: &str) {
    let Ok(u) = ServerUrl::parse(url) else {
        return;
    };
    assert!(!u.host.is_empty(), "{url:?} parsed with an empty host");
    // Hosts are not validated, so one with brackets cannot be printed unambiguously: skip those.
    if u.host.contains(['[', ']']) {
        return;
    }
    let scheme = if u.tls { "ssl" } else { "tcp" };
    let printed = format!("{scheme}://{}", u.socket_addr());
    assert_eq!(ServerUrl::parse(&printed).ok(), Some(u), "{url:?} -> {printed:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = load::<CloudCoreConfig>(text);
    if let Some(e) = load::<EdgeCoreConfig>(text) {
        let _ = e.modules.edgehub.http_server_addr();
        server_url(&e.modules.eventbus.mqtt_server_internal);
        server_url(&e.modules.eventbus.mqtt_server_external);
        if !e.modules.edgehub.token.is_empty() {
            let _ = ke_pki::token::Token::parse(&e.modules.edgehub.token);
        }
    }
    // Single-line inputs also go to the URL parser directly.
    if !text.contains('\n') {
        server_url(text);
    }
});
